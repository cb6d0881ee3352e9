/**
 * Fleet limits, apart from the fleet itself: the CLI validates its options with them without loading
 * the simulator (mqtt, protobuf, workers), so `telebridge devices add` and the like start fast.
 */

/** Most devices one fleet (one process) simulates. */
export const MAX_FLEET = 10_000;
