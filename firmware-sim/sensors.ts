/**
 * Sensor models that look like a real indoor device over a day: temperature follows a daily sinusoid
 * (coolest around 05:00 local-solar time, warmest around 17:00) with slow drift and noise; humidity
 * moves against temperature; the battery drains slowly and a little faster when it is warm; `counter`
 * counts samples (monotonic, +1 a sample, kept across reconnects — the storage checks use it).
 *
 * Values are in the units named by their keys. Each device gets its own phase, offsets and noise from
 * a seeded generator, so a fleet does not draw identical lines.
 */

export interface SensorState {
  /** Samples produced so far; the next sample's `counter` is this + 1. */
  counter: number;
  /** Battery, percent. */
  battery: number;
}

export interface SensorValues {
  temperature_c: number;
  humidity_pct: number;
  battery_pct: number;
  counter: number;
}

const DAY_MS = 86_400_000;

/** Small deterministic PRNG (mulberry32), seeded from the device id. */
export function seededRandom(seed: string): () => number {
  let h = 1779033703 ^ seed.length;
  for (let i = 0; i < seed.length; i++) {
    h = Math.imul(h ^ seed.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SensorModel {
  private readonly rand: () => number;
  private readonly baseTemp: number;
  private readonly amplitude: number;
  private readonly phaseMs: number;
  private readonly baseHumidity: number;
  private drift = 0;

  constructor(
    deviceId: string,
    readonly state: SensorState = { counter: 0, battery: 100 },
  ) {
    this.rand = seededRandom(deviceId);
    this.baseTemp = 19 + this.rand() * 5; // 19..24 °C
    this.amplitude = 1.5 + this.rand() * 2.5; // ±1.5..4 °C over the day
    this.phaseMs = (this.rand() - 0.5) * 2 * 3_600_000; // ±1 h: devices are in different rooms
    this.baseHumidity = 40 + this.rand() * 15; // 40..55 %
    if (!(state.battery > 0)) state.battery = 60 + this.rand() * 40;
  }

  /** Standard normal noise (Box–Muller). */
  private gauss(): number {
    const u = 1 - this.rand();
    const v = this.rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** The reading at `timeMs` (Unix ms). Advances the counter, drift and battery. */
  sample(timeMs: number): SensorValues {
    // Peak at 17:00 UTC + phase: sin() peaks at a quarter period after its zero crossing at 11:00.
    const dayPos = (timeMs + this.phaseMs - 11 * 3_600_000) / DAY_MS;
    this.drift = this.drift * 0.98 + this.gauss() * 0.02; // slow random walk, mean-reverting
    const daily = Math.sin(2 * Math.PI * dayPos);
    const temperature = this.baseTemp + this.amplitude * daily + this.drift + this.gauss() * 0.08;
    const humidity = clamp(
      this.baseHumidity - 3.5 * (temperature - this.baseTemp) + this.gauss() * 0.6,
      5,
      98,
    );
    // ~0.0005 %/sample: a device sending every second drains in a few days of simulated time.
    this.state.battery = Math.max(
      0,
      this.state.battery - (0.0004 + Math.max(0, daily) * 0.0002) * (0.5 + this.rand()),
    );
    this.state.counter++;
    return {
      temperature_c: round(temperature, 2),
      humidity_pct: round(humidity, 1),
      battery_pct: round(this.state.battery, 3),
      counter: this.state.counter,
    };
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
