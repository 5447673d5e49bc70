/**
 * Which of two release tags is newer, for the mirror's downgrade rule (tags.ts names the tag
 * kinds): boot-v releases by their dot-separated numbers, a boot-v prerelease (boot-v1.2.0-rc1)
 * before its release and its suffixes compared the same way; boot-dev-<run>-<commit> by run
 * number. A dev tag and a release tag cannot be ordered: the caller refuses unless told.
 */
import { DEV_TAG_PREFIX, RELEASE_TAG_PREFIX } from "./tags.ts";

/** The numbers and words of a version, "1.10.0-rc2" -> [1, 10, 0] and ["rc", 2]. */
const parts = (text: string): (number | string)[] => (text.match(/\d+|[A-Za-z]+/g) ?? []).map((p) => (/^\d+$/.test(p) ? Number(p) : p));

function compareParts(a: (number | string)[], b: (number | string)[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (typeof x === "number" && typeof y === "number") {
      if (x !== y) return x < y ? -1 : 1;
    } else if (String(x) !== String(y)) {
      return String(x) < String(y) ? -1 : 1;
    }
  }
  return 0;
}

/** <0 when `a` is older than `b`, >0 when newer, 0 when equal, NaN when they cannot be ordered. */
export function compareReleaseTags(a: string, b: string): number {
  if (a === b) return 0;
  const kind = (t: string) => (t.startsWith(DEV_TAG_PREFIX) ? "dev" : t.startsWith(RELEASE_TAG_PREFIX) ? "release" : "other");
  if (kind(a) !== kind(b) || kind(a) === "other") return Number.NaN;
  if (kind(a) === "dev") {
    const run = (t: string) => Number(/^(\d+)/.exec(t.slice(DEV_TAG_PREFIX.length))?.[1] ?? Number.NaN);
    const x = run(a);
    const y = run(b);
    return Number.isNaN(x) || Number.isNaN(y) || x === y ? Number.NaN : x - y;
  }
  const [aVersion, ...aPre] = a.slice(RELEASE_TAG_PREFIX.length).split("-");
  const [bVersion, ...bPre] = b.slice(RELEASE_TAG_PREFIX.length).split("-");
  const byVersion = compareParts(parts(aVersion!), parts(bVersion!));
  if (byVersion !== 0) return byVersion;
  // The same version: the release is newer than any of its prereleases.
  if (aPre.length === 0) return 1;
  if (bPre.length === 0) return -1;
  return compareParts(parts(aPre.join("-")), parts(bPre.join("-"))) || Number.NaN;
}
