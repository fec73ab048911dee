// Reserve's page: microphone or WAV file -> 16 kHz PCM over a WebSocket; transcripts back as SSE.
//
// One "run" at a time: create a session (POST /v1/sessions), follow its events
// (EventSource on events_url), open its audio socket (WebSocket on audio_url), stream,
// then send {"type":"end"} and keep the event stream until its "end" event.

import { CHUNK_BYTES, CHUNK_MS, Resampler, TARGET_RATE, floatToPcm16, mixToMono } from "./pcm-worklet.js";

const SESSION_SETTINGS = { encoding: "LINEAR_PCM", sample_rate_hertz: TARGET_RATE, interim_results: true };
const FINISH_TIMEOUT_MS = 30000; // after "end", how long the server may take to finish
const LINGER_MS = 5000; // after an audio-socket error, how long to wait for the error/end events
const FLUSH_TIMEOUT_MS = 1000; // how long the worklet may take to hand over its last samples
const SUBPROTOCOL = "reserve.v1"; // offered with "token.<token>": the token stays out of URLs and logs
const RESEND_MAX_BYTES = 60 * TARGET_RATE * 2; // audio kept since the last final, to resend after a drop
const RECONNECT_MS = 30000; // how long a dropped audio socket is tried again
const DROPPED_CODES = new Set([1001, 1006, 1012]); // going away, no close frame, restarting: reconnect
const BUSY_ON_RESUME = new Set([1013, 4409]); // overloaded, the old socket not yet seen gone: try again

// A back end that holds the API key may open this page as /#token=<session:create token>
// (POST /v1/tokens); the fragment never reaches a server. Without one, sessions are created
// with a plain POST, which works when the gateway runs with RESERVE_AUTH_DISABLED=true.
const CREATE_TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");
if (CREATE_TOKEN) history.replaceState(null, "", location.pathname + location.search);

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"),
  file: $("file"),
  status: $("status"),
  error: $("error"),
  transcript: $("transcript"),
  final: $("final"),
  interim: $("interim"),
  level: $("level"),
  model: $("model"),
};

/** An error whose message is written for the person using the page. */
class UserError extends Error {}

const CLOSE_WORDS = {
  1001: "the server is going away",
  1003: "the server refused a message from this page",
  1006: "the connection dropped",
  1008: "the server refused the connection",
  1009: "an audio frame was too large",
  1011: "the server failed",
  1013: "the server is busy; try again in a moment",
  4401: "the session token was missing",
  4403: "the session token (or this page's origin) was refused",
  4404: "the session no longer exists",
  4409: "another connection is already sending audio to this session",
  4410: "the session is already over",
  4422: "the recognition settings were refused",
};

const END_WORDS = {
  cancelled: "the session was cancelled",
  client_gone: "the audio connection was lost",
  idle_timeout: "no audio arrived in time",
  shutdown: "the server is shutting down",
  error: "the server reported an error",
};

let current = null; // the Run on screen

/** Audio sent since the server's last final (byte offsets as the server counts them), bounded. */
class SentAudio {
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.chunks = [];
    this.start = 0; // offset of the first byte kept
    this.end = 0; // offset after the last byte sent
  }

  append(bytes) {
    this.chunks.push(new Uint8Array(bytes));
    this.end += bytes.byteLength;
    if (this.end - this.start > this.maxBytes) this.confirm(this.end - this.maxBytes);
  }

  /** Forget audio before offset (whole samples): the server will not ask for it again. */
  confirm(offset) {
    offset = Math.min(this.end, offset - (offset % 2));
    while (this.chunks.length && this.start < offset) {
      const head = this.chunks[0];
      if (this.start + head.byteLength <= offset) {
        this.chunks.shift();
        this.start += head.byteLength;
      } else {
        this.chunks[0] = head.subarray(offset - this.start);
        this.start = offset;
      }
    }
  }

  /** The audio from offset on, and how many bytes before what is kept were asked for. */
  since(offset) {
    const lost = Math.max(0, this.start - offset);
    let skip = Math.max(0, offset - this.start);
    const out = [];
    for (const chunk of this.chunks) {
      if (skip >= chunk.byteLength) {
        skip -= chunk.byteLength;
        continue;
      }
      out.push(chunk.subarray(skip));
      skip = 0;
    }
    return { chunks: out, lost };
  }
}

class Run {
  constructor(mode, label) {
    this.mode = mode; // "mic" | "file"
    this.label = label;
    this.state = "connecting";
    this.session = null;
    this.events = null;
    this.ws = null;
    this.context = null;
    this.media = null;
    this.node = null;
    this.finals = [];
    this.socketError = null; // the last {"type":"error"} frame from the audio socket
    this.endSent = false;
    this.sent = new SentAudio(RESEND_MAX_BYTES);
    this.reconnecting = false; // the audio socket dropped: audio is kept until it is back
    this.resumingWs = null; // a reopened socket waiting for the server's "resumed"
    this.outageSince = 0; // when the current outage began (performance.now())
    this.attempt = 0;
    this.ended = false; // the "end" event arrived
    this.failed = false;
    this.closed = false; // everything released
    this.cancelled = false;
    this.timers = new Set();
  }

  later(ms, fn) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, ms);
    this.timers.add(id);
    return id;
  }

  get socketOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }
}

// -- on screen ------------------------------------------------------------------------------

function setState(run, state, text) {
  run.state = state;
  if (run !== current) return;
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  document.body.dataset.state = state;
  const active = state === "connecting" || state === "streaming" || state === "finishing";
  ui.start.textContent = active ? "Stop" : "Start";
  ui.start.dataset.action = active ? "stop" : "start";
  ui.start.disabled = state === "finishing";
  ui.start.setAttribute("aria-pressed", String(active));
  ui.file.disabled = active;
  if (!active) ui.level.value = 0;
}

function setStatusText(run, text) {
  if (run === current && !run.closed) ui.status.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

function renderTranscript(run, interim) {
  if (run !== current) return;
  ui.final.textContent = run.finals.join(" ");
  ui.interim.textContent = interim;
  ui.transcript.dataset.empty = String(!ui.final.textContent && !interim);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function showLevel(peak) {
  // a quick attack, a slow release: readable at 10 updates a second
  const shown = Number(ui.level.value) || 0;
  ui.level.value = peak > shown ? peak : shown * 0.7 + peak * 0.3;
}

// -- HTTP, SSE, WebSocket ------------------------------------------------------------------

async function describeHttpError(response) {
  let code = "";
  let message = "";
  try {
    const body = await response.json();
    code = body?.error?.code ?? "";
    message = body?.error?.message ?? "";
  } catch {
    message = response.statusText;
  }
  const detail = message ? `: ${message}` : "";
  const status = `HTTP ${response.status}${code ? ` ${code}` : ""}`;
  if (response.status === 401 || response.status === 403) {
    return `Not allowed to start a session (${status})${detail}`;
  }
  if (response.status === 429) {
    const retry = response.headers.get("Retry-After");
    return `Too many sessions for now (${status})${detail}${retry ? `. Try again in ${retry} s.` : "."}`;
  }
  if (response.status === 503) {
    const retry = response.headers.get("Retry-After");
    return `The server is busy (${status})${detail}${retry ? `. Try again in ${retry} s.` : ". Try again shortly."}`;
  }
  if (response.status === 422) return `The server refused the recognition settings (${status})${detail}`;
  return `Could not start a session (${status})${detail}`;
}

async function createSession() {
  let response;
  try {
    response = await fetch("/v1/sessions", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        ...(CREATE_TOKEN ? { Authorization: `Bearer ${CREATE_TOKEN}` } : {}),
      },
      body: JSON.stringify(SESSION_SETTINGS),
      cache: "no-store",
    });
  } catch {
    throw new UserError("Cannot reach the Reserve server. Check the connection and try again.");
  }
  if (!response.ok) throw new UserError(await describeHttpError(response));
  let session;
  try {
    session = await response.json();
  } catch {
    session = null;
  }
  if (!session || !session.token || !session.audio_url || !session.events_url) {
    throw new UserError("The server answered, but not with a session. Is this a Reserve server?");
  }
  return session;
}

/** EventSource cannot send headers: the token goes in the query (redacted in the access log). */
function withToken(path, token) {
  const url = new URL(path, location.href);
  url.searchParams.set("token", token);
  return url.href;
}

function parseData(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return {};
  }
}

function openEvents(run) {
  const events = new EventSource(withToken(run.session.events_url, run.session.token));
  run.events = events;
  events.addEventListener("transcript", (event) => onTranscript(run, parseData(event)));
  events.addEventListener("end", (event) => onEnd(run, parseData(event)));
  events.addEventListener("open", () => {
    if (run.state === "streaming") setStatusText(run, streamingText(run));
  });
  // "error" is both the server's error event (a MessageEvent with data) and EventSource's
  // own signal that the connection failed (a plain Event).
  events.addEventListener("error", (event) => {
    if (run.closed || run.ended) return;
    if (event instanceof MessageEvent && event.data) {
      const data = parseData(event);
      run.failed = true;
      showError(`Reserve reported an error${data.code ? ` (${data.code})` : ""}: ${data.message || "no details"}`);
      return;
    }
    if (events.readyState === EventSource.CLOSED) {
      run.failed = true;
      explainEventsFailure(events.url).then((why) => fail(run, new UserError(why)));
    } else {
      setStatusText(run, "Connection to the transcript stream lost; reconnecting…");
    }
  });
}

/** EventSource hides why it gave up; ask once more with fetch to get the server's error. */
async function explainEventsFailure(url) {
  const generic = "The transcript stream was refused or closed by the server.";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 3000);
  try {
    const response = await fetch(url, { headers: { Accept: "text/event-stream" }, signal: abort.signal, cache: "no-store" });
    if (response.ok) return generic;
    const body = await response.json().catch(() => ({}));
    const code = body?.error?.code ? ` ${body.error.code}` : "";
    const message = body?.error?.message ? `: ${body.error.message}` : "";
    return `The transcript stream was refused (HTTP ${response.status}${code})${message}.`;
  } catch {
    return "Lost the connection to the transcript stream.";
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

function describeClose(event, frame) {
  const said = frame?.message || CLOSE_WORDS[event.code] || "no reason given";
  const reason = event.reason ? `, ${event.reason}` : "";
  return `The audio connection was closed: ${said} (code ${event.code}${reason}).`;
}

function openSocket(run, resuming = false) {
  const url = new URL(run.session.audio_url, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.href, [SUBPROTOCOL, `token.${run.session.token}`]);
  ws.binaryType = "arraybuffer";
  run.ws = resuming ? null : ws; // a resumed socket carries audio once the server says where to go on
  if (resuming) run.resumingWs = ws;
  return new Promise((resolve, reject) => {
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      resolve();
    });
    ws.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      try {
        const message = JSON.parse(event.data);
        if (message && message.type === "error") run.socketError = message;
        if (message && message.type === "resumed") onResumed(run, ws, message.audio_bytes_received);
      } catch {
        /* not a control message: nothing to do */
      }
    });
    ws.addEventListener("close", (event) => {
      if (!opened) {
        if (resuming) onSocketClose(run, event, true);
        else reject(new UserError(`Could not open the audio connection (code ${event.code}).`));
        return;
      }
      if (run.ws === ws || resuming) onSocketClose(run, event, resuming && run.ws !== ws);
    });
  });
}

/** The server has the audio up to offset: resend the rest, then "end" if it was already sent. */
function onResumed(run, ws, offset) {
  if (run.closed || typeof offset !== "number" || offset < 0 || offset > run.sent.end) return;
  const { chunks, lost } = run.sent.since(offset);
  if (lost) {
    const seconds = (lost / 2 / TARGET_RATE).toFixed(1);
    showError(`The connection was down too long: ${seconds} s of audio could not be resent.`);
  }
  run.ws = ws;
  run.resumingWs = null;
  run.reconnecting = false;
  run.attempt = 0;
  for (const chunk of chunks) ws.send(chunk);
  if (run.endSent) ws.send(JSON.stringify({ type: "end" }));
  if (run.state === "streaming") setStatusText(run, streamingText(run));
}

/** A dropped audio socket: open it again with backoff until RECONNECT_MS have gone by. */
function reconnect(run) {
  if (run.closed || run.ended) return;
  const now = performance.now();
  if (!run.reconnecting) {
    run.reconnecting = true;
    run.outageSince = now;
    run.attempt = 0;
  }
  if (now - run.outageSince > RECONNECT_MS) {
    fail(run, new UserError("Lost the audio connection and could not get it back."));
    return;
  }
  run.attempt += 1;
  const delay = Math.min(5000, 200 * 2 ** (run.attempt - 1)) * (0.5 + Math.random() / 2);
  setStatusText(run, "Audio connection lost; reconnecting…");
  run.later(delay, () => {
    if (!run.closed && !run.ended) openSocket(run, true).catch(() => {});
  });
}

async function connect(run) {
  const session = await createSession();
  if (run.closed) {
    dropSession(session); // cancelled while the session was being created
    return;
  }
  run.session = session;
  openEvents(run);
  await openSocket(run);
}

// -- what the server says ------------------------------------------------------------------

function onTranscript(run, data) {
  if (run.closed) return;
  const text = typeof data.text === "string" ? data.text.trim() : "";
  if (data.is_final) {
    if (text) run.finals.push(text);
    // the server never asks again for audio a final covers
    if (typeof data.audio_processed === "number") run.sent.confirm(Math.floor(data.audio_processed * TARGET_RATE) * 2);
    renderTranscript(run, "");
  } else {
    renderTranscript(run, text);
  }
}

function onEnd(run, data) {
  if (run.closed) return;
  run.ended = true;
  run.events?.close(); // or EventSource would reconnect once the server completes the response
  const reason = data.reason || "unknown";
  if (reason === "finished" && !run.failed) {
    renderTranscript(run, "");
    setState(run, "done", run.mode === "file" ? `Done — ${run.label} transcribed.` : "Done.");
  } else {
    if (!run.failed) showError(`The session ended early: ${END_WORDS[reason] || reason}.`);
    run.failed = true;
    renderTranscript(run, "");
    setState(run, "error", "Stopped by an error.");
  }
  release(run);
}

function onSocketClose(run, event, resuming = false) {
  run.ws = null;
  if (run.closed) return;
  const retry = DROPPED_CODES.has(event.code) || (resuming && BUSY_ON_RESUME.has(event.code));
  if (retry && !run.ended) {
    reconnect(run);
    return;
  }
  if (resuming && event.code === 4410 && run.endSent) return; // it finished with what it had
  if (event.code === 1000) {
    // The server finished (or ended) the session; its "end" event says how.
    if (!run.ended) run.later(run.endSent ? FINISH_TIMEOUT_MS : LINGER_MS, () => noEnd(run));
    stopCapture(run);
    return;
  }
  run.failed = true;
  showError(describeClose(event, run.socketError));
  renderTranscript(run, "");
  setState(run, "error", "Stopped by an error.");
  stopCapture(run);
  run.later(LINGER_MS, () => release(run)); // the event stream may still bring the error and end events
}

function noEnd(run) {
  if (run.ended || run.closed) return;
  fail(run, new UserError("The server did not finish the session in time."));
}

// -- capture and sending -------------------------------------------------------------------

function sendChunk(run, bytes) {
  if (run.endSent) return;
  run.sent.append(bytes); // kept until a final covers it, in case the socket drops
  if (run.socketOpen) run.ws.send(bytes);
}

function sendEnd(run) {
  if (run.endSent) return;
  run.endSent = true;
  if (run.socketOpen) run.ws.send(JSON.stringify({ type: "end" })); // else sent when the socket is back
  stopCapture(run);
}

function stopCapture(run) {
  if (run.media) {
    for (const track of run.media.getTracks()) track.stop();
    run.media = null;
  }
  if (run.node) {
    run.node.port.onmessage = null;
    run.node.disconnect();
    run.node = null;
  }
  if (run.context) {
    run.context.close().catch(() => {});
    run.context = null;
  }
}

function release(run) {
  if (run.closed) return;
  run.closed = true;
  for (const id of run.timers) clearTimeout(id);
  run.timers.clear();
  stopCapture(run);
  run.events?.close();
  if (run.ws && run.ws.readyState <= WebSocket.OPEN) run.ws.close(1000, "page done");
  if (run.resumingWs && run.resumingWs.readyState <= WebSocket.OPEN) run.resumingWs.close(1000, "page done");
  if (run.session && !run.ended) dropSession(run.session);
}

/** Best effort: a session nobody will stream to is ended now rather than at its idle timeout. */
function dropSession(session) {
  fetch(`/v1/sessions/${encodeURIComponent(session.id)}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${session.token}` },
    keepalive: true,
  }).catch(() => {});
}

function fail(run, error) {
  if (run.closed) return;
  if (!(error instanceof UserError)) console.error(error);
  run.failed = true;
  showError(error instanceof UserError ? error.message : `Unexpected error: ${error?.message || error}`);
  renderTranscript(run, "");
  setState(run, "error", "Stopped by an error.");
  release(run);
}

function begin(mode, label) {
  if (current && !current.closed) release(current);
  const run = new Run(mode, label);
  current = run;
  clearError();
  renderTranscript(run, "");
  return run;
}

function streamingText(run) {
  return run.mode === "mic" ? "Listening — speak now." : `Streaming ${run.label}…`;
}

function describeMicrophoneError(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
      return "Microphone access was denied. Allow the microphone for this site in the browser's settings, then try again.";
    case "NotFoundError":
    case "DevicesNotFoundError":
      return "No microphone was found. Connect one and try again.";
    case "NotReadableError":
    case "TrackStartError":
      return "The microphone could not be opened; another application may be using it.";
    case "OverconstrainedError":
      return "The microphone does not support the requested settings.";
    case "SecurityError":
      return "Microphone access is blocked on this page (it must be served over https:// or from localhost).";
    default:
      return `Could not use the microphone: ${error?.message || error}`;
  }
}

async function startMicrophone() {
  const run = begin("mic", "microphone");
  setState(run, "connecting", "Waiting for the microphone…");
  try {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new UserError("Microphone capture needs a secure page: open it over https:// or from localhost.");
    }
    if (typeof AudioWorkletNode === "undefined" || !("audioWorklet" in AudioContext.prototype)) {
      throw new UserError(
        "This browser cannot process audio here (AudioWorklet is unsupported). Use a current Chrome, Edge, Firefox or Safari.",
      );
    }
    run.context = new AudioContext({ latencyHint: "interactive" });
    try {
      run.media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      throw new UserError(describeMicrophoneError(error));
    }
    if (run.closed) {
      stopCapture(run); // cancelled while the browser asked for permission
      return;
    }
    try {
      await run.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      run.node = new AudioWorkletNode(run.context, "pcm-encoder", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate: TARGET_RATE },
      });
    } catch (error) {
      if (run.closed) return;
      throw new UserError(`Could not start the audio processor: ${error?.message || error}`);
    }
    run.node.port.onmessage = (event) => onWorkletMessage(run, event.data);
    setState(run, "connecting", "Connecting to Reserve…");
    await connect(run);
    if (run.cancelled || run.closed) return;
    const source = run.context.createMediaStreamSource(run.media);
    const silence = run.context.createGain(); // keeps the node pulled without playing anything
    silence.gain.value = 0;
    source.connect(run.node).connect(silence).connect(run.context.destination);
    if (run.context.state === "suspended") await run.context.resume();
    setState(run, "streaming", streamingText(run));
  } catch (error) {
    fail(run, error);
  }
}

function onWorkletMessage(run, message) {
  if (!message || run.closed) return;
  if (message.type === "chunk") {
    sendChunk(run, message.bytes);
    showLevel(message.peak);
  } else if (message.type === "flushed") {
    sendEnd(run);
  }
}

// -- files ---------------------------------------------------------------------------------

function wavSampleRate(bytes) {
  const view = new DataView(bytes);
  const tag = (offset) => String.fromCharCode(...new Uint8Array(bytes, offset, 4));
  if (view.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return null;
  let offset = 12;
  while (offset + 8 <= view.byteLength) {
    const size = view.getUint32(offset + 4, true);
    if (tag(offset) === "fmt " && offset + 16 <= view.byteLength) return view.getUint32(offset + 12, true);
    offset += 8 + size + (size % 2);
  }
  return null;
}

/** The file as 16 kHz mono 16-bit PCM: decoded at its own rate, resampled by our filter. */
async function decodeToPcm16(bytes, name) {
  const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  if (!Offline) throw new UserError("This browser cannot decode audio files (no Web Audio API).");
  const declared = wavSampleRate(bytes);
  const rate = declared && declared >= 8000 && declared <= 96000 ? declared : 48000;
  let decoded;
  try {
    decoded = await new Offline(1, 1, rate).decodeAudioData(bytes.slice(0));
  } catch (error) {
    throw new UserError(`Could not decode ${name} as audio (${error?.message || error?.name || error}). Choose a PCM WAV file.`);
  }
  const resampler = new Resampler(decoded.sampleRate, TARGET_RATE);
  const body = resampler.process(mixToMono(decoded));
  const tail = resampler.flush();
  const samples = new Float32Array(body.length + tail.length);
  samples.set(body);
  samples.set(tail, body.length);
  return floatToPcm16(samples);
}

function chunkPeak(bytes) {
  const view = new DataView(bytes);
  let peak = 0;
  for (let i = 0; i + 1 < view.byteLength; i += 2) peak = Math.max(peak, Math.abs(view.getInt16(i, true)));
  return peak / 32768;
}

async function startFile(file) {
  const run = begin("file", file.name);
  setState(run, "connecting", `Decoding ${file.name}…`);
  try {
    let bytes;
    try {
      bytes = await file.arrayBuffer();
    } catch (error) {
      throw new UserError(`Could not read ${file.name}: ${error?.message || error}`);
    }
    const pcm = await decodeToPcm16(bytes, file.name);
    if (pcm.byteLength < 2) throw new UserError(`${file.name} holds no audio.`);
    if (run.closed) return;
    setState(run, "connecting", "Connecting to Reserve…");
    await connect(run);
    if (run.cancelled || run.closed) return;
    setState(run, "streaming", streamingText(run));
    streamFile(run, pcm);
  } catch (error) {
    fail(run, error);
  }
}

/** Send 100 ms chunks at real-time pace (on a clock, so late timers catch up), then "end". */
function streamFile(run, pcm) {
  const total = Math.ceil(pcm.byteLength / CHUNK_BYTES);
  const seconds = (pcm.byteLength / 2 / TARGET_RATE).toFixed(1);
  const started = performance.now();
  let next = 0;
  const tick = () => {
    if (run.closed || run.endSent || run.state !== "streaming") return;
    if (!run.socketOpen && !run.reconnecting) return; // onSocketClose reports why
    const due = Math.min(total, Math.floor((performance.now() - started) / CHUNK_MS) + 1);
    while (next < due) {
      const chunk = pcm.slice(next * CHUNK_BYTES, (next + 1) * CHUNK_BYTES);
      sendChunk(run, chunk);
      showLevel(chunkPeak(chunk));
      next += 1;
    }
    if (next >= total) {
      finish(run);
      return;
    }
    setStatusText(run, `Streaming ${run.label} — ${((next * CHUNK_MS) / 1000).toFixed(1)} s of ${seconds} s`);
    run.later(Math.max(0, started + next * CHUNK_MS - performance.now()), tick);
  };
  tick();
}

// -- stopping ------------------------------------------------------------------------------

/** No more audio: send "end" (after the worklet's last samples) and wait for the "end" event. */
function finish(run) {
  if (run.state !== "streaming") return;
  setState(run, "finishing", "Finishing — waiting for the last results…");
  run.later(FINISH_TIMEOUT_MS, () => noEnd(run));
  if (run.mode === "mic" && run.node) {
    run.node.port.postMessage({ type: "flush" });
    run.later(FLUSH_TIMEOUT_MS, () => sendEnd(run));
  } else {
    sendEnd(run);
  }
}

function cancel(run) {
  run.cancelled = true;
  setState(run, "idle", "Cancelled.");
  release(run);
}

function onStartClick() {
  const run = current;
  if (run && !run.closed && run.state === "connecting") cancel(run);
  else if (run && !run.closed && run.state === "streaming") finish(run);
  else startMicrophone();
}

function onFileChosen() {
  const file = ui.file.files && ui.file.files[0];
  if (!file) return;
  ui.file.value = ""; // the same file can be chosen again
  startFile(file);
}

ui.start.addEventListener("click", onStartClick);
ui.file.addEventListener("change", onFileChosen);
window.addEventListener("pagehide", () => {
  if (current && !current.closed) release(current);
});

/** Say which recognizer answers (GET /v1/models): the page promises nothing it does not know. */
async function showModels() {
  try {
    const response = await fetch("/v1/models", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) return;
    const offer = await response.json();
    const models = Array.isArray(offer.models) ? offer.models : [];
    if (!models.length) return;
    const names = models.map((m) => `${m.name} (${(m.languages || []).join(", ") || "any language"})`);
    const described = models.find((m) => m.parameters?.description)?.parameters.description;
    ui.model.textContent = `Recognizer: ${names.join("; ")}${described ? ` — ${described}` : ""}`;
    ui.model.hidden = false;
  } catch {
    /* the page works without it */
  }
}

showModels();
ui.start.disabled = false;
ui.file.disabled = false;
ui.status.dataset.state = "idle";
ui.status.textContent = "Ready. Press Start to transcribe from the microphone, or choose a WAV file.";
