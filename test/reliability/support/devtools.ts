/**
 * @module test/reliability/support/devtools
 * The inspector attack: any local process can ask a port for its devtools targets (`/json/list`) and
 * evaluate an expression in each over the Chrome DevTools Protocol. Used to prove the local worker
 * exposes no such port.
 */

/** What one probed port gave away. */
export interface InspectorProbe {
  port: number
  /** debuggable targets the port listed */
  targets: number
  /** what `expression` evaluated to in each target (JSON), where evaluation answered */
  values: string[]
}

const TIMEOUT_MS = 3000

/** `GET /json/list` on `port`: the targets' WebSocket URLs, or [] when it is no inspector. */
async function listTargets(port: number): Promise<string[]> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/json/list`, {
      signal: AbortSignal.timeout(TIMEOUT_MS),
    })
    const list = (await response.json()) as { webSocketDebuggerUrl?: string }[]
    if (!Array.isArray(list)) return []
    return list.flatMap((t) => (t.webSocketDebuggerUrl ? [t.webSocketDebuggerUrl] : []))
  } catch {
    return [] // not HTTP, not JSON, or nothing listening: not an inspector
  }
}

/** `Runtime.evaluate(expression)` in one target; the value as JSON, or undefined without an answer. */
function evaluateIn(url: string, expression: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url)
    let done = false
    const finish = (value: string | undefined) => {
      if (done) return // close() fires error/close events of its own
      done = true
      clearTimeout(timer)
      socket.close()
      resolve(value)
    }
    const timer = setTimeout(() => finish(undefined), TIMEOUT_MS)
    socket.addEventListener('open', () => {
      socket.send(
        JSON.stringify({
          id: 1,
          method: 'Runtime.evaluate',
          params: { expression, returnByValue: true },
        }),
      )
    })
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as {
        id?: number
        result?: { result?: { value?: unknown } }
      }
      if (message.id === 1) finish(JSON.stringify(message.result?.result?.value ?? null))
    })
    socket.addEventListener('error', () => finish(undefined))
  })
}

/** Probes every port for a devtools endpoint and evaluates `expression` in whatever it finds. */
export async function probeInspectors(
  ports: readonly number[],
  expression: string,
): Promise<InspectorProbe[]> {
  const probes: InspectorProbe[] = []
  for (const port of ports) {
    const targets = await listTargets(port)
    const values: string[] = []
    for (const url of targets) {
      const value = await evaluateIn(url, expression)
      if (value !== undefined) values.push(value)
    }
    probes.push({ port, targets: targets.length, values })
  }
  return probes
}
