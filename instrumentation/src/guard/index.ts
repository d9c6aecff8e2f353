export { LoopGuard, LoopDetectedError, type GuardFinding, type LoopKind, type LoopGuardOptions, type ObservedCall } from './loop-guard.js';
export { enableLoopGuard, guardPolicyFromEnv, type EnableLoopGuardOptions, type GuardPolicy, type LoopGuardHandle } from './enable.js';
export { DETECTOR_DEFAULTS, type DetectorParams } from '../../../queries/src/detector-defaults.js';
