// Reserve: audio to 16 kHz 16-bit little-endian PCM, in 100 ms chunks.
//
// One file, two uses:
//  * in the AudioWorkletGlobalScope it registers the "pcm-encoder" processor, which takes
//    the microphone at the context's rate (44.1/48 kHz), resamples it and posts chunks;
//  * as an ES module on the page it exports the same Resampler (used for files) and helpers.
//
// Resampling is a band-limited polyphase filter: a Kaiser-windowed sinc low-pass (cutoff
// ~7.5 kHz for a 16 kHz output, about 80 dB of stop-band rejection) evaluated at the
// fractional input position of every output sample, so the anti-alias FIR and the
// fractional-rate interpolation are one step. All state (input history, the position of
// the next output) is carried across calls, so 128-sample render quanta join seamlessly.

export const TARGET_RATE = 16000;
export const CHUNK_MS = 100;
export const CHUNK_SAMPLES = (TARGET_RATE * CHUNK_MS) / 1000; // 1600
export const CHUNK_BYTES = CHUNK_SAMPLES * 2; // 3200

const DEFAULT_FILTER = {
  cutoffHz: 7500, // -6 dB point for a 16 kHz output (0.9375 x its Nyquist)
  transitionHz: 1500, // pass band to ~6.75 kHz, stop band from ~8.25 kHz
  attenuationDb: 80,
  phases: 256, // fractional positions tabulated; in between, linear interpolation
};

function besselI0(x) {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-15) break;
  }
  return sum;
}

/** The filter for inRate -> outRate: {half, phases, table, cutoffHz}. */
export function designFilter(inRate, outRate = TARGET_RATE, options = {}) {
  const opts = { ...DEFAULT_FILTER, ...options };
  const nyquist = Math.min(inRate, outRate) / 2;
  const cutoffHz = Math.min(opts.cutoffHz, 0.9375 * nyquist);
  const transitionHz = (opts.transitionHz * cutoffHz) / opts.cutoffHz;
  const a = opts.attenuationDb;
  const beta = a > 50 ? 0.1102 * (a - 8.7) : a >= 21 ? 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21) : 0;
  const taps = Math.ceil((a - 7.95) / ((14.36 * transitionHz) / inRate)) + 1; // Kaiser's estimate
  const half = Math.max(2, Math.ceil(taps / 2));
  const width = 2 * half;
  const fc = cutoffHz / inRate; // cycles per input sample
  const i0beta = besselI0(beta);
  const phases = opts.phases;
  const table = new Float32Array((phases + 1) * width);
  for (let p = 0; p <= phases; p++) {
    const frac = p / phases;
    let sum = 0;
    const row = p * width;
    for (let j = 0; j < width; j++) {
      const tau = frac + half - 1 - j; // distance from the output position to input sample j
      const x = 2 * fc * tau;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const u = tau / half;
      const window = Math.abs(u) >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - u * u)) / i0beta;
      const h = 2 * fc * sinc * window;
      table[row + j] = h;
      sum += h;
    }
    for (let j = 0; j < width; j++) table[row + j] /= sum; // unity gain at DC for every phase
  }
  return { half, phases, table, cutoffHz };
}

/** Streaming resampler: feed Float32Array blocks of any size, get the output samples. */
export class Resampler {
  constructor(inRate, outRate = TARGET_RATE, filterOptions = {}) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`bad sample rates ${inRate} -> ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    this.passthrough = inRate === outRate;
    this.finished = false;
    this.consumed = 0; // input samples taken
    this.produced = 0; // output samples given
    if (this.passthrough) return;
    const filter = designFilter(inRate, outRate, filterOptions);
    this.half = filter.half;
    this.phases = filter.phases;
    this.table = filter.table;
    this.cutoffHz = filter.cutoffHz;
    this.buffer = new Float32Array(4 * this.half + 4096);
    this.length = this.half - 1; // leading zeros: output 0 sits on input 0
    this.position = this.half - 1; // where the next output sample falls, in buffer indices
  }

  /** Outputs `inputLength` more input samples can produce, at most. */
  maxOutput(inputLength) {
    if (this.passthrough) return inputLength;
    return Math.ceil((this.length + inputLength) / this.step) + 2;
  }

  /** Resample `input` into `out` (sized by maxOutput); returns how many samples were written. */
  processInto(input, out) {
    if (this.finished) throw new Error("the resampler was flushed");
    if (this.passthrough) {
      out.set(input);
      this.consumed += input.length;
      this.produced += input.length;
      return input.length;
    }
    this.#append(input);
    return this.#run(out);
  }

  /** Resample `input`; a new Float32Array of the output. */
  process(input) {
    const out = new Float32Array(this.maxOutput(input.length));
    return out.subarray(0, this.processInto(input, out));
  }

  /** The last samples (the filter's tail), after which the resampler takes no more input. */
  flush() {
    if (this.passthrough || this.finished) {
      this.finished = true;
      return new Float32Array(0);
    }
    const before = this.produced;
    const total = this.consumed;
    const out = this.process(new Float32Array(this.half + 1));
    this.finished = true;
    // exactly ceil(input / step) samples in all, however the input was split into blocks
    const wanted = Math.max(0, Math.ceil(total / this.step) - before);
    return out.subarray(0, Math.min(wanted, out.length));
  }

  #append(input) {
    const needed = this.length + input.length;
    if (needed > this.buffer.length) {
      const grown = new Float32Array(Math.max(needed, this.buffer.length * 2));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(input, this.length);
    this.length = needed;
    this.consumed += input.length;
  }

  #run(out) {
    const { buffer, table, half, phases, step } = this;
    const width = 2 * half;
    let position = this.position;
    let n = 0;
    while (Math.floor(position) + half < this.length) {
      const whole = Math.floor(position);
      const scaled = (position - whole) * phases;
      const phase = Math.floor(scaled);
      const blend = scaled - phase;
      const row0 = phase * width;
      const row1 = row0 + width;
      const base = whole - half + 1;
      let s0 = 0;
      let s1 = 0;
      for (let j = 0; j < width; j++) {
        const x = buffer[base + j];
        s0 += x * table[row0 + j];
        s1 += x * table[row1 + j];
      }
      out[n++] = s0 + blend * (s1 - s0);
      position += step;
    }
    // keep only the history the next output needs
    const drop = Math.floor(position) - half + 1;
    if (drop > 0) {
      buffer.copyWithin(0, drop, this.length);
      this.length -= drop;
      position -= drop;
    }
    this.position = position;
    this.produced += n;
    return n;
  }
}

/** Float samples in [-1, 1] to 16-bit little-endian PCM bytes. */
export function floatToPcm16(samples) {
  const bytes = new ArrayBuffer(samples.length * 2);
  const view = new DataView(bytes);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(i * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  return bytes;
}

/** Average the channels of an AudioBuffer-like ({numberOfChannels, length, getChannelData}). */
export function mixToMono(audioBuffer) {
  const channels = audioBuffer.numberOfChannels;
  if (channels === 1) return audioBuffer.getChannelData(0);
  const mono = new Float32Array(audioBuffer.length);
  for (let c = 0; c < channels; c++) {
    const data = audioBuffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += data[i] / channels;
  }
  return mono;
}

/** Collects float samples into 16-bit PCM chunks of `chunkSamples`, handed to `emit(ArrayBuffer)`. */
export class Pcm16Chunker {
  constructor(chunkSamples, emit) {
    this.chunkSamples = chunkSamples;
    this.emit = emit;
    this.#fresh();
  }

  #fresh() {
    this.bytes = new ArrayBuffer(this.chunkSamples * 2);
    this.view = new DataView(this.bytes);
    this.count = 0;
    this.peak = 0;
  }

  push(samples, length = samples.length) {
    for (let i = 0; i < length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      const magnitude = Math.abs(s);
      if (magnitude > this.peak) this.peak = magnitude;
      this.view.setInt16(this.count * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true);
      if (++this.count === this.chunkSamples) this.#send();
    }
  }

  flush() {
    if (this.count > 0) this.#send();
  }

  #send() {
    const bytes = this.count === this.chunkSamples ? this.bytes : this.bytes.slice(0, this.count * 2);
    const peak = this.peak;
    this.#fresh();
    this.emit(bytes, peak);
  }
}

// -- the AudioWorklet processor (only where the worklet globals exist) ----------------------
if (typeof AudioWorkletProcessor === "function" && typeof registerProcessor === "function") {
  class PcmEncoderProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const opts = (options && options.processorOptions) || {};
      const targetRate = opts.targetRate || TARGET_RATE;
      // `sampleRate` is the AudioWorkletGlobalScope's: the context's rate
      this.resampler = new Resampler(sampleRate, targetRate, opts.filter || {});
      this.mono = new Float32Array(128);
      this.scratch = new Float32Array(this.resampler.maxOutput(128) + 8);
      this.chunker = new Pcm16Chunker(opts.chunkSamples || (targetRate * CHUNK_MS) / 1000, (bytes, peak) =>
        this.port.postMessage({ type: "chunk", bytes, peak }, [bytes]),
      );
      this.running = true;
      this.port.onmessage = (event) => {
        if (event.data && event.data.type === "flush" && this.running) {
          this.running = false;
          const tail = this.resampler.flush();
          this.chunker.push(tail);
          this.chunker.flush();
          this.port.postMessage({ type: "flushed" });
        }
      };
      this.port.postMessage({ type: "ready", inputRate: sampleRate, outputRate: targetRate });
    }

    process(inputs) {
      if (!this.running) return false;
      const input = inputs[0];
      if (!input || input.length === 0 || !input[0]) return true; // nothing connected yet
      const frames = input[0].length;
      if (this.mono.length < frames) {
        this.mono = new Float32Array(frames);
        this.scratch = new Float32Array(this.resampler.maxOutput(frames) + 8);
      }
      const mono = this.mono.subarray(0, frames);
      if (input.length === 1) {
        mono.set(input[0]);
      } else {
        mono.fill(0);
        for (const channel of input) for (let i = 0; i < frames; i++) mono[i] += channel[i] / input.length;
      }
      if (this.scratch.length < this.resampler.maxOutput(frames)) {
        this.scratch = new Float32Array(this.resampler.maxOutput(frames) + 8);
      }
      const n = this.resampler.processInto(mono, this.scratch);
      this.chunker.push(this.scratch, n);
      return true;
    }
  }

  registerProcessor("pcm-encoder", PcmEncoderProcessor);
}
