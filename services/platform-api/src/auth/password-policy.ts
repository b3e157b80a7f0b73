// Staff passwords (NIST SP 800-63B §5.1.1.2): 12 to 1,024 characters, no composition rules, and never one that
// is common, expected or easy to guess. A password is compared with zxcvbn's lists (the most common passwords,
// English words, names, keyboard patterns, dates, repeats and sequences) and the account's own context (its
// email's parts, this product's name), and refused below zxcvbn's score 3 (an estimated 10^8 guesses: far
// beyond online guessing with sign-in limits, and slow offline behind scrypt). Only the password being set is checked;
// sign-in never runs it. Nothing here logs or returns the password.
import { ZxcvbnFactory } from "@zxcvbn-ts/core";
import * as common from "@zxcvbn-ts/language-common";
import * as english from "@zxcvbn-ts/language-en";

export const minimumPasswordLength = 12;
export const maximumPasswordLength = 1024;
/** zxcvbn's score from 0 (too guessable) to 4 (very unguessable). */
const minimumScore = 3;

let estimator: ZxcvbnFactory | undefined;

/** The estimator, made on first use: its dictionaries take about 0.1 s to load. */
function strengthEstimator(): ZxcvbnFactory {
  estimator ??= new ZxcvbnFactory({
    dictionary: { ...common.dictionary, ...english.dictionary },
    graphs: common.adjacencyGraphs,
    translations: english.translations,
  });
  return estimator;
}

/** Words an attacker would try first for this account: its email's parts and the product's name. */
function contextWords(email: string | undefined): string[] {
  return [...(email ?? "").toLowerCase().split(/[^a-z0-9]+/), "cloister"].filter((word) => word.length >= 3);
}

/**
 * Why a password may not be set, or undefined when it may. `email` is the account's; `current` its password
 * now, when it is being changed. The reason describes the rule or the pattern, never the password.
 */
export function passwordProblem(
  password: string,
  context: { readonly email?: string; readonly current?: string } = {},
): string | undefined {
  if (password.length < minimumPasswordLength || password.length > maximumPasswordLength) {
    return `a password has ${minimumPasswordLength} to ${maximumPasswordLength} characters`;
  }
  if (context.email !== undefined && password.trim().toLowerCase() === context.email.trim().toLowerCase()) {
    return "a password is not the account's email";
  }
  if (context.current !== undefined && password === context.current) {
    return "the new password is not the current one";
  }
  const estimate = strengthEstimator().check(password, contextWords(context.email));
  if (estimate.score < minimumScore) {
    // zxcvbn's warning names the pattern ("This is similar to a commonly used password."), never the password.
    const warning = (estimate.feedback.warning ?? "").replace(/\.$/, "");
    const pattern = warning === "" ? "" : ` (${warning.charAt(0).toLowerCase()}${warning.slice(1)})`;
    return `the password is too easy to guess${pattern}: a few unrelated words make a strong one`;
  }
  return undefined;
}
