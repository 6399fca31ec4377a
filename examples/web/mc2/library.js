// Indexing a set of photos into the page's persistent photo index (photoindex.js), while the page is open:
// each photo decoded at about twice the model's resolution (decodeImage's maxShortSide), embedded, and every
// batch appended to the IndexedDB journal before progress is shown -- a closed tab keeps every finished batch,
// and adding the same files again embeds only what is new or changed (key = file name, stamp = lastModified).

import { decodeImage } from "./engine.js";
import { openPersistent } from "./photoindex.js";

/** The index header of the loaded bundle (mc2.info()): another model's index is never mixed in. */
export function headerFor(info) {
  return { variant: info.variant, precision: info.precision, bundle_sha256: info.configSha256, dim: info.embedDim,
    vector_dtype: "float16" };
}

/** Open the loaded bundle's index (IndexedDB); `confirmReplace(message)` decides about another model's index. */
export function openLibrary(info, confirmReplace) {
  return openPersistent(headerFor(info), { name: "photos", confirmReplace });
}

/**
 * Index `files` (File objects) into `lib` (openLibrary's result): `embed(rgba, w, h)` -> Float32Array.
 * Returns { added, skipped, unchanged, stopped }. `shouldStop()` is checked between batches.
 */
export async function indexFiles(lib, files, { embed, resolution, batch = 16, onProgress = () => {}, shouldStop = () => false }) {
  const todo = files.filter((f) => !lib.index.has(f.name, f.lastModified));
  let added = 0, skipped = 0, done = 0;
  for (let i = 0; i < todo.length; i += batch) {
    if (shouldStop()) return { added, skipped, unchanged: files.length - todo.length, stopped: true };
    const ops = [];
    for (const f of todo.slice(i, i + batch)) {
      try {
        const img = await decodeImage(f, { maxShortSide: 2 * resolution });
        ops.push({ key: f.name, stamp: f.lastModified, vector: await embed(img.rgba, img.width, img.height) });
      } catch (e) {
        skipped++;  // unreadable: skipped now, tried again next time
      }
      done++;
    }
    await lib.append(ops);
    added += ops.length;
    onProgress(done, todo.length);
  }
  if (lib.index.compactionDue) await lib.compact();  // between runs, never in the middle of one
  return { added, skipped, unchanged: files.length - todo.length, stopped: false };
}
