/** A setting every service's main.ts must have: its value, or a clear error naming the variable. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is required`);
  }
  return value;
}
