/**
 * Room: bridge. What validation hands on: an accepted reading or status change, in plain numbers and strings
 * (no Long, no protobuf objects), so every destination encodes it once in its own format.
 */

/** One sample of a device: a point in storage, a `telemetry` message on the live channel. */
export interface Sample {
  /** Unix time, ms. Receive time when the device sent 0. */
  readonly time: number;
  readonly values: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
}

/** An accepted `Telemetry` message. */
export interface Reading {
  readonly deviceId: string;
  readonly seq: number;
  readonly samples: readonly Sample[];
  /** When the bridge received it, Unix ms. */
  readonly receivedAt: number;
}

export type DeviceState = 'online' | 'offline' | 'unspecified';

/** An accepted `DeviceStatus` message. */
export interface StatusChange {
  readonly deviceId: string;
  readonly state: DeviceState;
  readonly firmware: string;
  /** Unix ms; receive time when the device sent 0. */
  readonly time: number;
}
