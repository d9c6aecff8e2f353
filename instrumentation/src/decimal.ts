// The one rule for whole numbers read from text (settings, flags, environment variables), in the
// collector and in the agent's process alike.

/**
 * Text of decimal digits (a sign and blanks around allowed) as its number; undefined for anything
 * else: `0x10`, `1e3`, `4.5`, `12abc`, '' (which Number() reads as 16, 1000, 4.5, NaN and 0).
 */
export function decimalInteger(text: string): number | undefined {
  return /^\s*[-+]?\d+\s*$/.test(text) ? Number(text) : undefined;
}
