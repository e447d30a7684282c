// The page: controls, recording, drawing. The model lives in worker.js so the page stays responsive.

const INSTRUCTIONS = {
  transcribe: "Repeat exactly what the speaker said.",
  respond: "Answer the speaker's request or question.",
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const worker = new Worker("worker.js", { type: "module" });
let ready = false;
let busy = false;
let pending = null; // { kind: "wav", bytes } or { kind: "pcm", pcm, sampleRate }

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status-box").classList.toggle("error", isError);
}

function updateButtons() {
  $("ask").disabled = !ready || busy || !pending;
  $("record").disabled = !ready || busy || !navigator.mediaDevices;
}

function syncInstruction() {
  const task = $("task").value;
  if (task !== "custom") $("instruction").value = INSTRUCTIONS[task];
  $("instruction").readOnly = task !== "custom";
}

function drawMel(data, frames) {
  const bands = 80;
  const canvas = $("mel");
  canvas.width = Math.max(1, frames);
  canvas.height = bands;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(frames, bands);
  let lo = Infinity, hi = -Infinity;
  for (const v of data) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const span = hi - lo || 1;
  for (let m = 0; m < bands; m++) {
    for (let t = 0; t < frames; t++) {
      const v = (data[m * frames + t] - lo) / span;
      const i = ((bands - 1 - m) * frames + t) * 4;
      image.data[i] = Math.round(255 * Math.min(1, v * 1.6));
      image.data[i + 1] = Math.round(255 * v * v);
      image.data[i + 2] = Math.round(255 * (0.4 + 0.6 * v) * (1 - v));
      image.data[i + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  canvas.style.width = "600px";
  canvas.style.height = "160px";
}

function showTimings(answer) {
  const t = answer.times;
  const rows = [
    ["audio", `${answer.audio_seconds.toFixed(2)} s`],
    ["log-mel (wasm, CPU)", `${t.log_mel_ms.toFixed(0)} ms`],
    ["Whisper encoder (GPU)", `${t.encoder_ms.toFixed(0)} ms`],
    ["projector (GPU)", `${t.projector_ms.toFixed(0)} ms`],
    [`LLM prefill, ${answer.prompt_tokens} positions (GPU)`, `${t.prefill_ms.toFixed(0)} ms`],
    [`LLM decode, ${answer.tokens.length} tokens (GPU)`, `${t.decode_ms.toFixed(0)} ms`],
    ["audio tokens", `${answer.audio_tokens}`],
    ["stop", answer.stop_reason],
  ];
  $("timings").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
}

worker.onmessage = ({ data: msg }) => {
  switch (msg.type) {
    case "status":
      setStatus(msg.text);
      break;
    case "ready":
      ready = true;
      busy = false;
      $("adapter").textContent = msg.adapter;
      $("projector").innerHTML = msg.projectors
        .map((name) => `<option value="${name}">${name === "base" ? "base (trained)" : `user: ${name}`}</option>`)
        .join("");
      $("projector").value = msg.projector;
      $("projector").disabled = msg.projectors.length < 2;
      setStatus(`Ready with the ${msg.projector} projector: pick a WAV file or record, then Ask.`);
      document.body.dataset.ready = "true";
      break;
    case "mel":
      drawMel(msg.data, msg.frames);
      break;
    case "text":
      $("answer").textContent += msg.piece;
      break;
    case "done":
      busy = false;
      $("answer").textContent = msg.answer.text;
      $("answer").dataset.done = "true";
      showTimings(msg.answer);
      setStatus("Done.");
      console.log("tinyalign answer " + JSON.stringify(msg.answer));
      break;
    case "error":
      busy = false;
      setStatus(msg.message, true);
      document.body.dataset.error = msg.message;
      console.error("tinyalign error: " + msg.message);
      break;
  }
  updateButtons();
};

$("task").onchange = syncInstruction;
$("projector").onchange = () => {
  busy = true;
  updateButtons();
  setStatus(`Loading the ${$("projector").value} projector…`);
  worker.postMessage({ type: "projector", name: $("projector").value });
};
$("wav").onchange = async () => {
  const file = $("wav").files[0];
  if (!file) return;
  pending = { kind: "wav", bytes: new Uint8Array(await file.arrayBuffer()) };
  setStatus(`${file.name}: ready to ask.`);
  updateButtons();
};

let recorder = null;
$("record").onclick = async () => {
  if (recorder) {
    recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      $("record").textContent = "● Record";
      const blob = new Blob(chunks, { type: chunks[0]?.type || "audio/webm" });
      const context = new AudioContext();
      const decoded = await context.decodeAudioData(await blob.arrayBuffer());
      pending = { kind: "pcm", pcm: decoded.getChannelData(0).slice(), sampleRate: decoded.sampleRate };
      setStatus(`Recorded ${decoded.duration.toFixed(1)} s: ready to ask.`);
      updateButtons();
    };
    recorder.start();
    $("record").textContent = "■ Stop";
    setStatus("Recording… (at most 30 s)");
    setTimeout(() => recorder?.stop(), 30_000);
  } catch (e) {
    setStatus(`Cannot record: ${e.message}`, true);
  }
};

$("ask").onclick = () => {
  if (!pending || busy) return;
  busy = true;
  $("answer").textContent = "";
  delete $("answer").dataset.done;
  updateButtons();
  worker.postMessage({
    type: "ask",
    audio: pending,
    instruction: $("instruction").value,
    maxTokens: Number($("max-tokens").value) || 48,
  });
};

if (params.get("max_tokens")) $("max-tokens").value = params.get("max_tokens");
syncInstruction();
worker.postMessage({ type: "load" });
