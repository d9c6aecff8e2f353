export { LoopGuard, LoopDetectedError, loopDetectedIn, type GuardFinding, type LoopKind, type LoopGuardOptions, type ObservedCall } from './loop-guard.js';
export { detectorSettingsFromEnv, enableLoopGuard, guardPolicyFromEnv, loopGuard, warnOnlyFromEnv, type EnableLoopGuardOptions, type GuardPolicy, type LoopGuardHandle } from './enable.js';
export { DETECTOR_DEFAULTS, DetectorSettingsError, parseDetectorSettings, type DetectorParams } from '../../../queries/src/detector-defaults.js';
export { haltSignal, type HaltSignalOptions } from './halt-signal.js';
