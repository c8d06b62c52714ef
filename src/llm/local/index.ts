export { createLocalModel, defaultThreads, LocalLanguageModel, type LocalGpu, type LocalModelOptions, type LocalGenerationDetails, type LocalGuidedGenerateRequest } from "./local-model.ts";
export { argmax, candidateScores, guidanceScores, logSoftmax, sampleToken, seededRandom } from "./cfg-math.ts";
export { checkContextFits, DecodeStepBarrier, DETERMINISTIC_PIECE, maxPromptTokens, pieces, sequenceContextSize, SlotPool, type SequenceSizing } from "./batched-decoding.ts";
