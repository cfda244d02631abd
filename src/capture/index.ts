export { CAPTURE_TRIGGER, captureTriggerInstalled, installCaptureTriggers, observedEvents } from "./triggers.js";
export { type CapturedEvent, claimUnroutedEvents, markRouted } from "./outbox.js";
