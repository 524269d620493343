// Patterns that the schemas and the CLI's flag checks share; a file of its own because the CLI
// checks flags before (and often without) loading the schemas.

/** An email address: one @, no spaces or characters that would need quoting. */
export const EMAIL_ADDRESS_PATTERN = '^[^\\s@<>(),;:"]+@[^\\s@<>(),;:"]+$';
