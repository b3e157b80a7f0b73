// The password policy (NIST SP 800-63B §5.1.1.2): long enough, not the email or the current password, and not
// common, expected or easy to guess; the reason names the rule or pattern, never the password.
import assert from "node:assert/strict";
import { test } from "node:test";
import { passwordProblem } from "./password-policy.js";

test("refuses common, expected and patterned passwords, however long, and says why without the password", () => {
  for (const weak of [
    "password1234",
    "qwertyuiop12",
    "123456789012",
    "iloveyou1234",
    "aaaaaaaaaaaaaaaaaaaa",
    "abcdefghijklmnop",
    "hospital1234",
    "cloister2026!",
  ]) {
    const problem = passwordProblem(weak, { email: "nurse.jones@demo.hospital" }) ?? "allowed";
    assert.match(problem, /^the password is too easy to guess/, weak);
    assert.ok(!problem.includes(weak), "the reason does not repeat the password");
  }
});

test("refuses the wrong length, the account's email and the current password", () => {
  assert.match(passwordProblem("short one") ?? "", /12 to 1024 characters/);
  assert.match(passwordProblem("x".repeat(1025)) ?? "", /12 to 1024 characters/);
  assert.match(
    passwordProblem("Nurse.Jones@Demo.Hospital", { email: "nurse.jones@demo.hospital" }) ?? "",
    /not the account's email/,
  );
  assert.match(
    passwordProblem("correct horse battery staple", { current: "correct horse battery staple" }) ?? "",
    /not the current one/,
  );
});

test("allows passphrases and the portal's temporary passwords", () => {
  for (const strong of [
    "correct horse battery staple",
    "violet tractor under the pier",
    "7b9w-dd3h-ky39-63x4",
    "demo-Qm9vLnRhYmxlLjQy",
  ]) {
    assert.equal(passwordProblem(strong, { email: "nurse.jones@demo.hospital" }), undefined, strong);
  }
});
