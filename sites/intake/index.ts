export { checkSignature, routeBundle, routeOf, type ArrivedBundle, type IntakeHandlers, type RouterOptions } from './router.ts';
export { startIntake, type Intake, type IntakeOptions } from './intake.ts';
export { holdReason, type PeerStanding } from './hold.ts';
export { checkQuota, humanBytes, peerAreas, peerUse, type PeerUse } from './quota.ts';
