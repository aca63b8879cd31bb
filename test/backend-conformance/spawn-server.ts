/**
 * @module spawn-server
 * Starts a backend implementation as a child process for the conformance suites and resolves with the
 * URL of its ready line (`… listening on http://HOST:PORT`).
 */

import { type ChildProcess, spawn } from 'node:child_process'

export interface ListeningServer {
  url: string
  child: ChildProcess
  stop(): void
}

export async function spawnListening(
  command: string,
  args: string[],
  options: { env: Record<string, string | undefined>; cwd?: string },
): Promise<ListeningServer> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      out += s
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match) resolve(match[1] as string)
    })
    child.once('exit', (code) => reject(new Error(`${command} ${args[0]} exited with ${code}`)))
  })
  return { url, child, stop: () => child.kill('SIGTERM') }
}
