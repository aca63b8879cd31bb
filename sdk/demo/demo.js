// The piflow SDK demo: `?api=<edge url>&key=<api key>` enables the remote path (with local fallback);
// without it the page generates locally only. `?models=<url>` sets where local models come from
// (default `/models/`; the API's `<edge url>/v1/models/` works too). `?tokens=<url>` instead of `key`:
// the proxy pattern for browser auth — the page asks its own server (`POST <url>`, which mints a client
// token with `POST /v1/tokens` and the key it keeps) and never sees the key.
import { createClient, toBlob } from '/sdk/index.js'
import { createLocalGenerator } from '/sdk/local.js'

const params = new URLSearchParams(location.search)
const api = params.get('api')
const apiKey = params.get('key') ?? undefined
const modelBaseUrl = params.get('models') ?? '/models/'
const tokenUrl = params.get('tokens')
/** Credentials of the demo's client: a client token from the page's own server, or the key. */
const auth = tokenUrl
  ? { tokenProvider: async () => (await fetch(tokenUrl, { method: 'POST' })).json() }
  : apiKey
    ? { apiKey }
    : {}
const status = document.querySelector('#status')
const gallery = document.querySelector('#gallery')

/** Local settings per path: which onnxruntime-web provider and which policy integrator. */
const LOCAL = {
  auto: {},
  wasm: { providers: ['wasm'], integrator: 'cpu' },
  // Headless test machines only have SwiftShader, a software adapter that `auto` passes over.
  webgpu: { providers: ['webgpu'], integrator: 'webgpu', allowSoftwareWebGpu: true },
}

/** Every overall load progress report with its time (`at`, performance.now()), for the tests and the bench. */
const loadProgress = []

const generators = new Map()
/**
 * One generator per path: with an API configured, a client that falls back to local generation with
 * self-hosted files when the edge is unreachable; without one, the local generator itself.
 */
const generatorFor = (path, overrides = {}) => {
  const key = `${path} ${JSON.stringify(overrides)}`
  if (!generators.has(key)) {
    const local = {
      modelBaseUrl,
      wasmPaths: '/ort/',
      ...LOCAL[path],
      ...overrides,
      onProgress: (p) => {
        loadProgress.push({ ...p, at: performance.now() })
        status.textContent =
          p.stage === 'download'
            ? `downloading ${Math.round((100 * p.loadedBytes) / p.totalBytes)} % (${p.file})`
            : p.stage
      },
    }
    generators.set(
      key,
      api
        ? createClient({
            baseUrl: api,
            ...auth,
            retry: { limit: 3, delay: 200 },
            fallback: 'local',
            local,
          })
        : createLocalGenerator(local),
    )
  }
  return generators.get(key)
}

/** Decodes an image (PNG bytes or URL) into RGBA pixels. */
const pixelsOf = async (image) => {
  // Inline bytes (local, `response: 'base64'`) or the signed URL (remote): the SDK's toBlob does both.
  const blob = await toBlob(image)
  const bitmap = await createImageBitmap(blob)
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height)
  const context = canvas.getContext('2d')
  context.drawImage(bitmap, 0, 0)
  return { blob, rgba: context.getImageData(0, 0, bitmap.width, bitmap.height).data }
}

/**
 * Generates along `path` and shows the images. Returns a summary (and the pixels) for the tests.
 * @param {'auto'|'wasm'|'webgpu'} path
 * @param local extra local options (e.g. `{ numThreads }` for the bench)
 */
const generate = async (path, input, local = {}) => {
  status.textContent = `generating (${path})…`
  const started = performance.now()
  const result = await generatorFor(path, local).generate(input)
  const images = []
  for (const image of result.data.images) {
    const { blob, rgba } = await pixelsOf(image)
    const figure = document.createElement('figure')
    const img = document.createElement('img')
    img.src = URL.createObjectURL(blob)
    img.alt = `${input.prompt} (seed ${image.seed})`
    const caption = document.createElement('figcaption')
    caption.textContent = `${result.backend} · policy ${result.data.integration} · seed ${image.seed} · ${Math.round(result.timings.totalMs)} ms`
    figure.append(img, caption)
    gallery.prepend(figure)
    images.push({
      seed: image.seed,
      width: image.width,
      height: image.height,
      rgba: Array.from(rgba),
    })
  }
  status.textContent = `done: ${result.backend} in ${Math.round(performance.now() - started)} ms`
  return {
    backend: result.backend,
    reason: result.reason,
    integration: result.data.integration,
    requestId: result.requestId,
    seed: result.data.seed,
    timings: result.timings,
    images,
  }
}

document.querySelector('#form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  const seed = form.get('seed')
  try {
    await generate(form.get('path'), {
      prompt: String(form.get('prompt')),
      size: Number(form.get('size')),
      ...(seed === '' ? {} : { seed: Number(seed) }),
    })
  } catch (error) {
    status.textContent = `${error.name}: ${error.message}`
  }
})

// Hooks for the browser tests and the benchmark.
window.piflowDemo = { generate, createClient, createLocalGenerator, loadProgress, ready: true }
