/// <reference types="@webgpu/types" />
/**
 * @module test/webgpu/suite
 * Everything one runtime checks on its device: the applicable golden cases (both variants), then the
 * property checks. Runtime-neutral (bundled for Chromium, run directly under Node/Dawn).
 */
import type { GoldenCase } from '../conformance/cases.ts'
import { PROPERTY_NAMES, runWebGpuProperties } from './properties.ts'
import { appliesTo, runWebGpuCases, type WebGpuCaseResult } from './run-case.ts'

/** How many results {@link runWebGpuSuite} produces for `cases`. */
export const suiteSize = (cases: readonly GoldenCase[]): number =>
  cases.filter((c) => appliesTo(c, 'f32')).length +
  cases.filter((c) => appliesTo(c, 'f16')).length +
  PROPERTY_NAMES.length

/** Golden cases, then property checks, on `device`. */
export async function runWebGpuSuite(
  device: GPUDevice,
  cases: readonly GoldenCase[],
): Promise<WebGpuCaseResult[]> {
  return [...(await runWebGpuCases(device, cases)), ...(await runWebGpuProperties(device))]
}
