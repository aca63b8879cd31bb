// Values test/global-setup.ts provides to the workerd tests (and to vitest.config.ts's pool options).
declare module 'vitest' {
  export interface ProvidedContext {
    backendUrl: string
    /** a backend that sleeps 300 ms per run */
    slowBackendUrl: string
    backendSecret: string
    devApiKey: string
    backendAvailable: boolean
    /** the PyTorch backend (piflux-tiny, 300 ms per NFE), when its environment exists */
    torchUrl: string
    torchAvailable: boolean
    torchPython: string
  }
}

export {}
