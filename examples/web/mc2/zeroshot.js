// Labels, prompt templates and the zero-shot math (the CLIP recipe of mc2export.zeroshot; Kotlin twin:
// examples/android/shared/.../ZeroShot.kt). The template lists are mc2export.zeroshot's, checked by the tests.

import { collapseWhitespace } from "./tokenizer.js";

export const OPENAI_TEMPLATES = [
  "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
  "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
  "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
  "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
  "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
  "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
  "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
  "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
  "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
  "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
  "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
  "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
  "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
  "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
  "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
  "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.",
  "the cartoon {}.", "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
  "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.", "itap of a {}.",
  "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
  "a tattoo of the {}.",
];
export const SIMPLE_TEMPLATES = [
  "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.", "a {} in a video game.",
  "art of the {}.", "a photo of the small {}.",
];
export const MAX_LABELS = 1000;

/** Labels from the text field: separated by commas or new lines (\r\n too), trimmed, empty ones dropped.
 *  Returns { labels, error } (error: a message for the screen, labels then empty). */
export function parseLabels(text) {
  const labels = String(text).split(/[,\n]/).map(collapseWhitespace).filter((l) => l.length > 0);
  if (!labels.length) return { labels: [], error: 'Type at least one label, e.g. "cat, dog, car".' };
  const seen = new Set();
  for (const l of labels) {
    if (seen.has(l)) return { labels: [], error: `The label "${l}" appears twice: give each class once.` };
    seen.add(l);
  }
  if (labels.length > MAX_LABELS) return { labels: [], error: `Too many labels (${labels.length}; at most ${MAX_LABELS}).` };
  return { labels, error: null };
}

/** Every template applied to every label (label-major order, as Python), tokenized. */
export function prompts(labels, templates, tokenizer) {
  const out = [];
  for (const label of labels) {
    for (const t of templates) {
      const text = t.split("{}").join(label);
      out.push({ label, text, tokens: tokenizer.tokenize(text) });
    }
  }
  return out;
}

export function truncationWarning(ps, contextLength) {
  const cut = ps.filter((p) => p.tokens.truncated);
  if (!cut.length) return null;
  const first = cut[0].text;
  const shown = first.length > 60 ? first.slice(0, 60) + "..." : first;
  return `${cut.length} prompt(s) longer than ${contextLength} tokens were truncated (as in Python), e.g. "${shown}"`;
}

export function l2normalize(v) {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = n === 0 ? v[i] : v[i] / n;
  return out;
}

export function dot(a, b) {
  if (a.length !== b.length) throw new Error(`embedding sizes differ: ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export const cosine = (a, b) => dot(l2normalize(a), l2normalize(b));

/** Per class: the renormalized mean of its normalized prompt embeddings. */
export function classEmbedding(embs) {
  if (!embs.length) throw new Error("no prompt embeddings");
  const acc = new Float64Array(embs[0].length);
  for (const e of embs) {
    const u = l2normalize(e);
    for (let i = 0; i < acc.length; i++) acc[i] += u[i];
  }
  return l2normalize(Float32Array.from(acc, (x) => x / embs.length));
}

/** softmax(logitScale * cos(image, class)) over the classes. */
export function probabilities(image, classes, logitScale) {
  const u = l2normalize(image);
  const logits = classes.map((c) => logitScale * dot(u, c));
  const m = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topK(values, k) {
  return Array.from(values.keys()).sort((a, b) => values[b] - values[a] || a - b).slice(0, k);
}
