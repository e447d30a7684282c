// Owns the model: fetches the files once (kept in the Cache API), builds the wasm Assistant, answers.

import init, { Assistant } from "./pkg/tinyalign_wasm.js";

const CACHE = "tinyalign-models";
let assistant = null;
let projectors = new Map(); // name → { manifest, weights } file entries of models/manifest.json

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

// The server lists the files with their sha256; a file is downloaded once per content, then read from the
// Cache API. The cache only saves downloads: when it cannot store a file (storage quota, a full disk: Chromium
// reports both as "Cache.put() encountered a network error") the page goes on with the downloaded bytes.
async function fetchModelFile(file) {
  const url = `models/${file.path}?sha256=${file.sha256}`;
  const cache = "caches" in self ? await caches.open(CACHE).catch(() => null) : null;
  const cached = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    if (bytes.length === file.bytes) return bytes;
    console.warn(`${file.path}: the cached copy has ${bytes.length} bytes, not ${file.bytes}; downloading it again`);
    await cache.delete(url).catch(() => {});
  }
  const bytes = await download(url, file);
  if (cache) {
    try {
      await cache.put(url, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
    } catch (e) {
      const estimate = navigator.storage?.estimate ? await navigator.storage.estimate().catch(() => null) : null;
      const room = estimate ? ` (storage used ${mb(estimate.usage)} of a ${mb(estimate.quota)} quota)` : "";
      console.warn(`${file.path} was not cached, it will be downloaded again next time: ${message(e)}${room}`);
    }
  }
  return bytes;
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

// Fetches the whole file, retrying a dropped connection twice; checks its length and, where the page has
// WebCrypto (any secure context: https or localhost), its sha256 against the server's manifest.
async function download(url, file) {
  for (let attempt = 1; ; attempt++) {
    post({ type: "status", text: `Downloading ${file.path} (${mb(file.bytes)})…` });
    let bytes;
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`${file.path}: HTTP ${response.status}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      // fetch and arrayBuffer reject with a TypeError when the connection drops; an HTTP error is final.
      if (!(e instanceof TypeError) || attempt === 3) throw new Error(`${file.path}: ${message(e)}`);
      console.warn(`${file.path}: download attempt ${attempt} failed (${message(e)}); retrying`);
      continue;
    }
    if (bytes.length !== file.bytes) {
      throw new Error(`${file.path}: received ${bytes.length} bytes, the server listed ${file.bytes}`);
    }
    if (self.crypto?.subtle) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
      if (hex !== file.sha256) throw new Error(`${file.path}: sha256 ${hex}, the server listed ${file.sha256}`);
    }
    return bytes;
  }
}

async function load() {
  if (!navigator.gpu) {
    throw new Error("This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome/Chromium or Edge, or enable WebGPU.");
  }
  post({ type: "status", text: "Loading the wasm module…" });
  await init();
  const manifest = await (await fetch("models/manifest.json")).json();
  const files = {};
  for (const file of manifest.files) {
    if (file.projector) {
      const entry = projectors.get(file.projector) || {};
      entry[file.role] = file;
      projectors.set(file.projector, entry);
    } else {
      files[file.role] = await fetchModelFile(file);
    }
  }
  const [name, first] = projectors.entries().next().value;
  const text = (bytes) => new TextDecoder().decode(bytes);
  const projectorManifest = text(await fetchModelFile(first.projector_manifest));
  const projectorWeights = await fetchModelFile(first.projector_weights);
  post({ type: "status", text: "Building the model on the GPU…" });
  assistant = await Assistant.create(
    text(files.whisper_config),
    files.whisper_weights,
    projectorManifest,
    projectorWeights,
    files.llm_gguf,
  );
  post({ type: "ready", adapter: assistant.adapter(), projectors: [...projectors.keys()], projector: name });
}

async function setProjector(name) {
  const entry = projectors.get(name);
  if (!entry) throw new Error(`no projector named ${name}`);
  const manifest = new TextDecoder().decode(await fetchModelFile(entry.projector_manifest));
  assistant.set_projector(manifest, await fetchModelFile(entry.projector_weights));
  post({ type: "ready", adapter: assistant.adapter(), projectors: [...projectors.keys()], projector: name });
}

async function ask({ audio, instruction, maxTokens }) {
  const onText = (piece) => post({ type: "text", piece });
  const wav = audio.kind === "wav";
  const mel = wav ? assistant.log_mel_wav(audio.bytes) : assistant.log_mel_pcm(audio.pcm, audio.sampleRate);
  post({ type: "mel", data: mel, frames: mel.length / 80 }, [mel.buffer]);
  const answer = wav
    ? await assistant.ask_wav(audio.bytes, instruction, maxTokens, onText)
    : await assistant.ask_pcm(audio.pcm, audio.sampleRate, instruction, maxTokens, onText);
  post({ type: "done", answer: JSON.parse(answer) });
}

const message = (e) => (e instanceof Error ? e.message : String(e));

// One message at a time: a projector switch never overlaps an answer.
let queue = Promise.resolve();
self.onmessage = ({ data: msg }) => {
  queue = queue.then(async () => {
    try {
      if (msg.type === "load") await load();
      else if (msg.type === "ask") await ask(msg);
      else if (msg.type === "projector") await setProjector(msg.name);
    } catch (e) {
      post({ type: "error", message: message(e) });
    }
  });
};
