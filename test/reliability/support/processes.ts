/**
 * @module test/reliability/support/processes
 * What an attacker (or an operator) on this machine sees of the local stack's processes: who listens
 * on which loopback port, process groups, parent/child trees and whether a pid is still alive. Read
 * from /proc and `ss` (iproute2) only, so it sees exactly what any local process could.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, … (stat(5)). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** Every pid on the machine. */
function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const fields = statFields(pid)
  return fields !== undefined && fields[0] !== 'Z'
}

/** The process group of `pid` (undefined once it is gone). */
export function processGroupOf(pid: number): number | undefined {
  const pgrp = statFields(pid)?.[2]
  return pgrp === undefined ? undefined : Number(pgrp)
}

/** Every live process in group `pgid`. */
export function pidsInGroup(pgid: number): number[] {
  return allPids().filter((pid) => processGroupOf(pid) === pgid && isAlive(pid))
}

/** `pid` and every live process below it (children, grandchildren, …). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const other of allPids()) {
    const ppid = Number(statFields(other)?.[1])
    if (ppid) children.set(ppid, [...(children.get(ppid) ?? []), other])
  }
  const tree: number[] = []
  const visit = (p: number) => {
    if (!isAlive(p)) return
    tree.push(p)
    for (const child of children.get(p) ?? []) visit(child)
  }
  visit(pid)
  return tree
}

/** Listening TCP sockets as `ss -ltnpH` reports them: port → owning pids. */
function listeners(): { port: number; pids: number[] }[] {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' })
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => ({
      port: Number(/:(\d+)\s/.exec(line)?.[1]),
      pids: [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])),
    }))
}

/** PID of the process listening on `url`'s port (undefined if none). */
export function listenerPid(url: string): number | undefined {
  const port = Number(new URL(url).port)
  return listeners().find((l) => l.port === port)?.pids[0]
}

/** Every TCP port any of `pids` listens on. */
export function portsOf(pids: readonly number[]): number[] {
  const wanted = new Set(pids)
  const ports = listeners()
    .filter((l) => l.pids.some((pid) => wanted.has(pid)))
    .map((l) => l.port)
  return [...new Set(ports)].sort((a, b) => a - b)
}

/** Resident memory (KiB) of the process listening on `url`'s port (0 if none). */
export function rssOfListener(url: string): number {
  const pid = listenerPid(url)
  if (!pid) return 0
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}
