// Stop strings, matched across token boundaries: text that could still be the start of a stop
// string is held back until the next piece decides, and a stop string itself is never emitted.

export class StopMatcher {
  /** @param {string[]} stops */
  constructor(stops) {
    this.stops = stops;
    this.pending = ""; // text held back: a suffix that some stop string starts with
  }

  /**
   * Feed the next piece of text.
   * @param {string} text
   * @returns {{emit: string, hit: boolean}} text safe to show; hit: a stop string ended the reply
   */
  push(text) {
    if (this.stops.length === 0) return { emit: text, hit: false };
    const s = this.pending + text;
    let at = -1;
    for (const stop of this.stops) {
      const i = s.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.pending = "";
      return { emit: s.slice(0, at), hit: true };
    }
    let hold = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, s.length); k > hold; k--) {
        if (s.endsWith(stop.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.pending = s.slice(s.length - hold);
    return { emit: s.slice(0, s.length - hold), hit: false };
  }

  /** The held-back text, at the end of a reply that no stop string ended. */
  flush() {
    const s = this.pending;
    this.pending = "";
    return s;
  }
}
