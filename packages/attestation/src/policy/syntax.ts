// The MAA attestation policy language (learn.microsoft.com/azure/attestation/policy-grammar):
//   version=1.0; [configurationrules{…};] authorizationrules{…}; issuancerules{…};
// A rule is `[binding:][condition] && … => action(…);`.
import { AttestationError, guard } from "../errors.js";

/** A policy that does not parse; `line` and `column` are 1-based. */
export class PolicySyntaxError extends AttestationError {
  readonly line: number;
  readonly column: number;

  constructor(message: string, line: number, column: number) {
    super("ERR_POLICY_SYNTAX", `policy line ${line}, column ${column}: ${message}`);
    this.line = line;
    this.column = column;
  }
}

export type Literal = string | number | boolean;
export type ComparisonOperator = "==" | "!=" | "<" | "<=" | ">" | ">=";
export type ClaimProperty = "type" | "value" | "valueType" | "issuer";

export interface Predicate {
  readonly property: ClaimProperty;
  readonly operator: ComparisonOperator;
  readonly literal: Literal;
}

export interface Condition {
  readonly binding: string | undefined;
  readonly predicates: readonly Predicate[];
}

/** An action argument: a literal, or a property of a bound claim (`c.value`). */
export type Expression =
  | { readonly kind: "literal"; readonly value: Literal }
  | { readonly kind: "claim"; readonly binding: string; readonly property: ClaimProperty };

export interface ClaimAction {
  readonly kind: "add" | "issue" | "issueproperty";
  readonly type: Expression;
  readonly value: Expression;
  readonly valueType: Expression | undefined;
}

export type Action = { readonly kind: "permit" } | { readonly kind: "deny" } | ClaimAction;

export interface Rule {
  readonly conditions: readonly Condition[];
  readonly action: Action;
  readonly line: number;
}

export interface Policy {
  readonly text: string;
  readonly version: string;
  readonly configurationRules: readonly Rule[];
  readonly authorizationRules: readonly Rule[];
  readonly issuanceRules: readonly Rule[];
}

type TokenKind = "identifier" | "string" | "number" | "symbol" | "end";

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly line: number;
  readonly column: number;
}

const symbols = [
  "=>",
  "==",
  "!=",
  "<=",
  ">=",
  "&&",
  "<",
  ">",
  "=",
  ";",
  ":",
  ",",
  ".",
  "[",
  "]",
  "{",
  "}",
  "(",
  ")",
];

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let index = 0;
  let line = 1;
  let lineStart = 0;
  const at = (): { line: number; column: number } => ({ line, column: index - lineStart + 1 });
  while (index < text.length) {
    const char = text[index] as string;
    if (char === "\n") {
      index++;
      line++;
      lineStart = index;
      continue;
    }
    if (/\s/.test(char)) {
      index++;
      continue;
    }
    if (char === "/" && text[index + 1] === "/") {
      while (index < text.length && text[index] !== "\n") {
        index++;
      }
      continue;
    }
    const position = at();
    if (char === '"') {
      let value = "";
      index++;
      for (;;) {
        const next = text[index];
        if (next === undefined || next === "\n") {
          throw new PolicySyntaxError("unterminated string", position.line, position.column);
        }
        index++;
        if (next === '"') {
          break;
        }
        if (next === "\\") {
          const escaped = text[index++];
          if (escaped === undefined) {
            throw new PolicySyntaxError("unterminated string", position.line, position.column);
          }
          value += escaped === "n" ? "\n" : escaped === "t" ? "\t" : escaped;
        } else {
          value += next;
        }
      }
      tokens.push({ kind: "string", text: value, ...position });
      continue;
    }
    const number = /^-?\d+(\.\d+)?/.exec(text.slice(index));
    if (number !== null) {
      tokens.push({ kind: "number", text: number[0], ...position });
      index += number[0].length;
      continue;
    }
    const identifier = /^[A-Za-z_$][A-Za-z0-9_$-]*/.exec(text.slice(index));
    if (identifier !== null) {
      tokens.push({ kind: "identifier", text: identifier[0], ...position });
      index += identifier[0].length;
      continue;
    }
    const symbol = symbols.find((candidate) => text.startsWith(candidate, index));
    if (symbol === undefined) {
      throw new PolicySyntaxError(
        `unexpected character ${JSON.stringify(char)}`,
        position.line,
        position.column,
      );
    }
    tokens.push({ kind: "symbol", text: symbol, ...position });
    index += symbol.length;
  }
  tokens.push({ kind: "end", text: "end of policy", line, column: index - lineStart + 1 });
  return tokens;
}

const claimProperties: readonly string[] = ["type", "value", "valueType", "issuer"];
const comparisonOperators: readonly string[] = ["==", "!=", "<", "<=", ">", ">="];

class Parser {
  private index = 0;
  private readonly tokens: Token[];

  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.index + offset, this.tokens.length - 1)] as Token;
  }

  private next(): Token {
    const token = this.peek();
    if (token.kind !== "end") {
      this.index++;
    }
    return token;
  }

  private error(message: string, token: Token = this.peek()): never {
    throw new PolicySyntaxError(message, token.line, token.column);
  }

  private isSymbol(text: string, offset = 0): boolean {
    const token = this.peek(offset);
    return token.kind === "symbol" && token.text === text;
  }

  private expectSymbol(text: string): Token {
    const token = this.next();
    if (token.kind !== "symbol" || token.text !== text) {
      this.error(`expected "${text}" but found "${token.text}"`, token);
    }
    return token;
  }

  private expectKeyword(text: string): Token {
    const token = this.next();
    if (token.kind !== "identifier" || token.text.toLowerCase() !== text.toLowerCase()) {
      this.error(`expected "${text}" but found "${token.text}"`, token);
    }
    return token;
  }

  private literal(): Literal {
    const token = this.next();
    if (token.kind === "string") {
      return token.text;
    }
    if (token.kind === "number") {
      return Number(token.text);
    }
    if (token.kind === "identifier" && (token.text === "true" || token.text === "false")) {
      return token.text === "true";
    }
    return this.error(`expected a value but found "${token.text}"`, token);
  }

  private claimProperty(): ClaimProperty {
    const token = this.next();
    if (token.kind !== "identifier" || !claimProperties.includes(token.text)) {
      this.error(`expected type, value, valueType or issuer but found "${token.text}"`, token);
    }
    return token.text as ClaimProperty;
  }

  private condition(): Condition {
    let binding: string | undefined;
    if (this.peek().kind === "identifier" && this.isSymbol(":", 1)) {
      binding = this.next().text;
      this.next();
    }
    this.expectSymbol("[");
    const predicates: Predicate[] = [];
    while (!this.isSymbol("]")) {
      if (predicates.length > 0) {
        this.expectSymbol(",");
      }
      const property = this.claimProperty();
      const operatorToken = this.next();
      if (operatorToken.kind !== "symbol" || !comparisonOperators.includes(operatorToken.text)) {
        this.error(`expected a comparison operator but found "${operatorToken.text}"`, operatorToken);
      }
      predicates.push({
        property,
        operator: operatorToken.text as ComparisonOperator,
        literal: this.literal(),
      });
    }
    this.expectSymbol("]");
    return { binding, predicates };
  }

  private expression(bindings: ReadonlySet<string>): Expression {
    const token = this.peek();
    if (token.kind === "identifier" && this.isSymbol(".", 1)) {
      if (!bindings.has(token.text)) {
        this.error(`"${token.text}" is not bound by a condition of this rule`, token);
      }
      this.next();
      this.next();
      return { kind: "claim", binding: token.text, property: this.claimProperty() };
    }
    return { kind: "literal", value: this.literal() };
  }

  private action(bindings: ReadonlySet<string>): Action {
    const nameToken = this.next();
    const name = nameToken.text.toLowerCase();
    if (
      nameToken.kind !== "identifier" ||
      !["permit", "deny", "add", "issue", "issueproperty"].includes(name)
    ) {
      this.error(
        `expected permit, deny, add, issue or issueproperty but found "${nameToken.text}"`,
        nameToken,
      );
    }
    this.expectSymbol("(");
    if (name === "permit" || name === "deny") {
      this.expectSymbol(")");
      return name === "permit" ? { kind: "permit" } : { kind: "deny" };
    }
    const args = new Map<string, Expression>();
    while (!this.isSymbol(")")) {
      if (args.size > 0) {
        this.expectSymbol(",");
      }
      const key = this.next();
      if (key.kind !== "identifier" || !["type", "value", "valuetype"].includes(key.text.toLowerCase())) {
        this.error(`expected type, value or valueType but found "${key.text}"`, key);
      }
      this.expectSymbol("=");
      args.set(key.text.toLowerCase(), this.expression(bindings));
    }
    this.expectSymbol(")");
    const type = args.get("type");
    const value = args.get("value");
    if (type === undefined || value === undefined) {
      this.error(`${name}() needs type and value`, nameToken);
    }
    return { kind: name as "add" | "issue" | "issueproperty", type, value, valueType: args.get("valuetype") };
  }

  private rule(): Rule {
    const line = this.peek().line;
    const conditions: Condition[] = [];
    if (!this.isSymbol("=>")) {
      conditions.push(this.condition());
      while (this.isSymbol("&&")) {
        this.next();
        conditions.push(this.condition());
      }
    }
    this.expectSymbol("=>");
    const bindings = new Set(
      conditions.flatMap((condition) => (condition.binding === undefined ? [] : [condition.binding])),
    );
    const action = this.action(bindings);
    this.expectSymbol(";");
    return { conditions, action, line };
  }

  private ruleSet(name: string): Rule[] {
    this.expectKeyword(name);
    this.expectSymbol("{");
    const rules: Rule[] = [];
    while (!this.isSymbol("}")) {
      if (this.peek().kind === "end") {
        this.error(`"${name}" is not closed with "}"`);
      }
      rules.push(this.rule());
    }
    this.expectSymbol("}");
    this.expectSymbol(";");
    return rules;
  }

  policy(text: string): Policy {
    this.expectKeyword("version");
    this.expectSymbol("=");
    const versionToken = this.next();
    if (versionToken.kind !== "number" || versionToken.text !== "1.0") {
      this.error(`only version=1.0 is supported, found "${versionToken.text}"`, versionToken);
    }
    this.expectSymbol(";");
    const section = (name: string): boolean =>
      this.peek().kind === "identifier" && this.peek().text.toLowerCase() === name;
    const configurationRules = section("configurationrules") ? this.ruleSet("configurationrules") : [];
    const authorizationRules = this.ruleSet("authorizationrules");
    const issuanceRules = this.ruleSet("issuancerules");
    if (this.peek().kind !== "end") {
      this.error(`unexpected "${this.peek().text}" after issuancerules`);
    }
    for (const rule of configurationRules) {
      if (rule.action.kind !== "issueproperty") {
        throw new PolicySyntaxError("configurationrules may only use issueproperty()", rule.line, 1);
      }
    }
    for (const rule of [...authorizationRules, ...issuanceRules]) {
      if (rule.action.kind === "issueproperty") {
        throw new PolicySyntaxError("issueproperty() belongs in configurationrules", rule.line, 1);
      }
    }
    return { text, version: "1.0", configurationRules, authorizationRules, issuanceRules };
  }
}

/**
 * Parses an MAA policy. Errors are {@link PolicySyntaxError}s (code `ERR_POLICY_SYNTAX`) with line and column.
 *
 * @example
 * ```ts
 * const policy = parsePolicy('version=1.0; authorizationrules{ => permit(); }; issuancerules{};');
 * ```
 */
export function parsePolicy(text: string): Policy {
  if (typeof text !== "string") {
    throw new PolicySyntaxError("policy must be text", 1, 1);
  }
  return guard("ERR_POLICY_SYNTAX", "the policy could not be parsed", () =>
    new Parser(tokenize(text)).policy(text),
  );
}
