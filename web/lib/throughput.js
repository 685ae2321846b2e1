// The run's throughput, measured from the bytes it reports over time and smoothed, for an ETA that moves
// steadily (bytes left / smoothed bytes per second) instead of jumping with each file's momentary speed.
// Side-effect free.

const MIN_INTERVAL_S = 0.5; // samples closer than this (a burst of events) are merged into the next one
const HALF_LIFE_S = 6; // how fast the smoothed rate follows a change of speed

export class Throughput {
  constructor(halfLife = HALF_LIFE_S) {
    this.halfLife = halfLife;
    this.reset();
  }

  reset() {
    this.run = null;
    this.last = null;
    this.smoothed = null;
  }

  /** One observation: the run `run` has `bytes` done at time `t` (seconds). */
  add(run, bytes, t) {
    if (run !== this.run) {
      this.reset();
      this.run = run;
    }
    if (!this.last || bytes < this.last.bytes) { // the first sample, or a partial file discarded
      this.last = { bytes, t };
      return;
    }
    const dt = t - this.last.t;
    if (dt < MIN_INTERVAL_S) return;
    const rate = (bytes - this.last.bytes) / dt;
    const alpha = 1 - 0.5 ** (dt / this.halfLife);
    this.smoothed = this.smoothed === null ? rate : this.smoothed + alpha * (rate - this.smoothed);
    this.last = { bytes, t };
  }

  /** Smoothed bytes per second, or null before two samples. */
  rate() {
    return this.smoothed;
  }

  /** Seconds to fetch `bytesLeft` at the smoothed rate, or null when no rate is known yet. */
  eta(bytesLeft) {
    return this.smoothed > 0 && bytesLeft >= 0 ? bytesLeft / this.smoothed : null;
  }
}
