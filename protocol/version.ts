/** Protocol major carried in every message (`v`). Within a major, fields are only ever added, as optional. */
export const PROTOCOL_MAJOR = 1;
