export { createLocalModel, defaultThreads, LocalLanguageModel, type LocalGpu, type LocalModelOptions, type LocalGenerationDetails } from "./local-model.ts";
export { argmax, guidanceScores, logSoftmax, sampleToken, seededRandom } from "./cfg-math.ts";
