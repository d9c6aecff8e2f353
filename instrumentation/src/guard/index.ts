export { LoopGuard, LoopDetectedError, loopDetectedIn, type GuardFinding, type LoopKind, type LoopGuardOptions, type ObservedCall } from './loop-guard.js';
export { detectorSettingsFromEnv, enableLoopGuard, guardPolicyFromEnv, type EnableLoopGuardOptions, type GuardPolicy, type LoopGuardHandle } from './enable.js';
export { DETECTOR_DEFAULTS, DetectorSettingsError, parseDetectorSettings, type DetectorParams } from '../../../queries/src/detector-defaults.js';
