export { exportDataset, keptSentences, bestFixedSteps, EXPORT_FORMATS, type ExportFormat, type ExportOptions, type ExportSummary } from "./export.ts";
export { datasetCard, type CardConfig } from "./card.ts";
