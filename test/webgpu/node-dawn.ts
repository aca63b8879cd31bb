/// <reference types="@webgpu/types" />
/**
 * @module test/webgpu/node-dawn
 * A GPUDevice in Node from the `webgpu` package (Dawn). Dawn finds an adapter through the Vulkan
 * loader; on machines without a GPU driver, Chromium's SwiftShader ICD works when the process starts
 * with VK_ICD_FILENAMES pointing at it and Chromium's libvulkan.so.1 on LD_LIBRARY_PATH (the dynamic
 * loader reads LD_LIBRARY_PATH only at process start, hence a child process — see run.ts).
 */
import { existsSync } from 'node:fs'
import path from 'node:path'

/** Where Debian's chromium package puts SwiftShader's Vulkan ICD (and its own libvulkan.so.1). */
const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
]

/** Where a system Vulkan loader usually lives (present on machines with a GPU driver). */
const SYSTEM_VULKAN_LOADERS = [
  '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
  '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
  '/usr/lib64/libvulkan.so.1',
  '/usr/lib/libvulkan.so.1',
]

/** Whether this process can load a Vulkan loader by itself (else Dawn can only use SwiftShader's). */
export const hasSystemVulkan = (): boolean =>
  SYSTEM_VULKAN_LOADERS.some((file) => existsSync(file)) ||
  process.env['VK_ICD_FILENAMES'] !== undefined

/** Environment that makes Dawn use SwiftShader, or null when no SwiftShader ICD is installed. */
export function swiftShaderEnv(): Record<string, string> | null {
  const icd = SWIFTSHADER_ICDS.find((file) => existsSync(file))
  if (!icd) return null
  const dir = path.dirname(icd)
  const ld = process.env['LD_LIBRARY_PATH']
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: ld ? `${dir}:${ld}` : dir }
}

const instances: GPU[] = []

/** A device, or the reason there is none. */
export type DawnDevice =
  | { device: GPUDevice; adapter: string; features: string[] }
  | { device: null; reason: string }

/**
 * Requests an adapter and a device with the adapter's `shader-f16` feature when it has it.
 * Never throws for a missing adapter: returns the reason instead.
 */
export async function requestDawnDevice(): Promise<DawnDevice> {
  let gpu: GPU
  try {
    const { create } = await import('webgpu')
    gpu = create([])
    // Dawn's instance must outlive every device made from it: a collected instance crashes the process.
    instances.push(gpu)
  } catch (error) {
    return { device: null, reason: `the webgpu package failed to load: ${String(error)}` }
  }
  const adapter = await gpu.requestAdapter()
  if (!adapter) {
    const icd = process.env['VK_ICD_FILENAMES']
    return {
      device: null,
      reason: `Dawn found no WebGPU adapter (VK_ICD_FILENAMES=${icd ?? 'unset'})`,
    }
  }
  const features = [...adapter.features] as string[]
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has('shader-f16') ? ['shader-f16'] : [],
  })
  const info = adapter.info
  const name = [info.vendor, info.architecture, info.device, info.description]
    .filter(Boolean)
    .join(' ')
  return { device, adapter: `dawn/node: ${name || 'unknown adapter'}`, features }
}
