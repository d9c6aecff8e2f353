// A cheap pass over a request body before it is decoded: counts the objects decoding would
// allocate and how deeply they nest, without allocating any. Protobuf packs an empty message
// into 2 bytes and JSON an empty object into 3, while a decoded object costs ~100 bytes of
// heap: without this pass a 64 MiB body of tiny spans or attributes would become gigabytes.
// Protobuf the scan cannot follow is refused: the decoder would go on past it (it skips groups,
// and a field may run past the end of its message) and build what was never counted.

export interface PrescanLimits {
  /** Most protobuf messages / JSON objects and arrays in one request. */
  maxObjects: number;
  /** Deepest nesting of protobuf messages / JSON containers. */
  maxDepth: number;
}

export type PrescanResult = { ok: true; objects: number } | { ok: false; reason: 'objects' | 'depth' } | { ok: false; reason: 'malformed'; detail: string };

// OTLP trace message types, by the fields of each that hold sub-messages.
const REQ = 0, RS = 1, RES = 2, SS = 3, SCOPE = 4, SPAN = 5, EVENT = 6, LINK = 7, KV = 8, AV = 9, AVLIST = 10, KVLIST = 11, STATUS = 12;
const CHILDREN: Record<number, Record<number, number>> = {
  [REQ]: { 1: RS },
  [RS]: { 1: RES, 2: SS },
  [RES]: { 1: KV },
  [SS]: { 1: SCOPE, 2: SPAN },
  [SCOPE]: { 3: KV },
  [SPAN]: { 9: KV, 11: EVENT, 13: LINK, 15: STATUS },
  [EVENT]: { 3: KV },
  [LINK]: { 4: KV },
  [KV]: { 2: AV },
  [AV]: { 5: AVLIST, 6: KVLIST },
  [AVLIST]: { 1: AV },
  [KVLIST]: { 1: KV },
  [STATUS]: {},
};

/** Counts the sub-messages of an OTLP ExportTraceServiceRequest, iteratively. */
export function prescanProtobuf(buf: Uint8Array, limits: PrescanLimits): PrescanResult {
  const types: number[] = [REQ];
  const ends: number[] = [buf.length];
  let objects = 0;
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) return -1;
      const b = buf[pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    return -1;
  };
  const malformed = (what: string): PrescanResult => ({ ok: false, reason: 'malformed', detail: `${what} at byte ${pos}` });
  for (;;) {
    while (types.length > 1 && pos >= ends[ends.length - 1]!) {
      types.pop();
      ends.pop();
    }
    if (pos >= buf.length) break;
    const end = ends[ends.length - 1]!;
    const tag = varint();
    if (tag < 0) return malformed('truncated field tag');
    const wire = tag % 8;
    const field = Math.floor(tag / 8);
    if (wire === 0) {
      if (varint() < 0) return malformed('truncated varint');
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      const len = varint();
      if (len < 0 || pos + len > end) return malformed('length past the end of its message');
      const child = CHILDREN[types[types.length - 1]!]![field];
      if (child === undefined) {
        pos += len;
      } else {
        if (++objects > limits.maxObjects) return { ok: false, reason: 'objects' };
        if (types.length >= limits.maxDepth) return { ok: false, reason: 'depth' };
        types.push(child);
        ends.push(pos + len);
      }
    } else {
      // groups (3, 4: deprecated, in no OTLP message) or no wire type at all (6, 7)
      return malformed(wire === 3 || wire === 4 ? 'a group (wire type 3/4: not in OTLP)' : `invalid wire type ${wire}`);
    }
    if (pos > end) return malformed('field past the end of its message');
  }
  return { ok: true, objects };
}

/** Members an OTLP/JSON object has at most (a span has 15 fields); past it, each member counts. */
const OTLP_OBJECT_MEMBERS = 32;

/**
 * Counts the objects and arrays of a JSON text (UTF-8), outside strings, the other elements of
 * arrays (strings, numbers: after the first, by their commas), and the members of an object past
 * OTLP_OBJECT_MEMBERS: an array of a million short strings, or an object of a million keys,
 * decodes to as many heap values, which counting containers alone let through. An OTLP object's
 * own few members are not counted, so that a JSON batch costs about what its protobuf form does
 * (counting every member, a batch of 30,000 spans the old count took was refused).
 */
export function prescanJson(buf: Uint8Array, limits: PrescanLimits): PrescanResult {
  let objects = 0;
  let depth = 0;
  let inString = false;
  // per open container (depth bounds them): an array, or an object's member count so far
  const isArray: boolean[] = [];
  const members: number[] = [];
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i]!;
    if (inString) {
      if (b === 0x5c) i++; // backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
      continue;
    }
    if (b === 0x22) inString = true;
    else if (b === 0x2c) {
      if (depth === 0) continue;
      let counts: boolean;
      if (isArray[depth - 1]) {
        // an array's next element: counted here unless it is a container (counted when it opens)
        let next = i + 1;
        while (next < buf.length && (buf[next] === 0x20 || buf[next] === 0x0a || buf[next] === 0x0d || buf[next] === 0x09)) next++;
        counts = buf[next] !== 0x7b && buf[next] !== 0x5b;
      } else {
        counts = ++members[depth - 1]! >= OTLP_OBJECT_MEMBERS;
      }
      if (counts && ++objects > limits.maxObjects) return { ok: false, reason: 'objects' };
    } else if (b === 0x7b || b === 0x5b) {
      if (++objects > limits.maxObjects) return { ok: false, reason: 'objects' };
      if (++depth > limits.maxDepth) return { ok: false, reason: 'depth' };
      isArray[depth - 1] = b === 0x5b;
      members[depth - 1] = 0;
    } else if ((b === 0x7d || b === 0x5d) && depth > 0) depth--;
  }
  return { ok: true, objects };
}
