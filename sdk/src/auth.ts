/**
 * @module auth
 * The credential a client sends as `Authorization: Bearer …`: a fixed API key or client token, or a
 * short-lived token from the caller's `tokenProvider` (typically the caller's own server, which mints it
 * with `POST /v1/tokens`). A provided token is fetched on first use, refreshed shortly before it
 * expires, and once more when the API answers 401 `token_expired`; concurrent calls share one refresh.
 */
import { PiflowError } from './errors.ts'

/** What a {@link TokenProvider} resolves to: `POST /v1/tokens`' answer has this shape. */
export interface ClientToken {
  token: string
  /** When the token stops working: ISO 8601 string, epoch milliseconds or a Date. */
  expiresAt: string | number | Date
}

/** Fetches a fresh client token, e.g. from the page's own server (which holds the API key). */
export type TokenProvider = () => Promise<ClientToken>

/** The credential of one client. */
export interface Auth {
  /** The token to send now (undefined: none configured). */
  current(): Promise<string | undefined>
  /**
   * The API said `sent` has expired: forget it (unless a refresh already replaced it). True when a
   * retry may get a fresh token, i.e. there is a provider.
   */
  expired(sent: string | undefined): boolean
}

/** Refresh ahead of expiry: 30 s early, or halfway through a shorter lifetime. */
const refreshTime = (obtained: number, expires: number) =>
  expires - Math.min(30_000, (expires - obtained) / 2)

export const createAuth = (options: {
  apiKey?: string | undefined
  token?: string | undefined
  tokenProvider?: TokenProvider | undefined
}): Auth => {
  const { tokenProvider } = options
  if (!tokenProvider) {
    const fixed = options.token ?? options.apiKey
    return { current: async () => fixed, expired: () => false }
  }
  let grant: Promise<string> | undefined
  let token: string | undefined
  // Infinity while a refresh is in flight, so concurrent calls wait for that one.
  let refreshAt = 0
  let refreshes = 0
  const refresh = () => {
    refreshAt = Number.POSITIVE_INFINITY
    const obtained = Date.now()
    const mine = ++refreshes
    grant = (async () => {
      let got: ClientToken
      try {
        got = await tokenProvider()
      } catch (cause) {
        throw new PiflowError(`tokenProvider failed: ${(cause as Error)?.message}`, { cause })
      }
      const expires = new Date(got?.expiresAt ?? Number.NaN).getTime()
      if (typeof got?.token !== 'string' || Number.isNaN(expires)) {
        throw new PiflowError('tokenProvider must resolve to { token, expiresAt }')
      }
      if (mine === refreshes) {
        token = got.token
        refreshAt = refreshTime(obtained, expires)
      }
      return got.token
    })()
    // A failed refresh is forgotten: the next call asks the provider again.
    grant.catch(() => {
      if (mine === refreshes) refreshAt = 0
    })
    return grant
  }
  return {
    current: () => (grant && Date.now() < refreshAt ? grant : refresh()),
    expired: (sent) => {
      if (sent === token) refreshAt = 0
      return true
    },
  }
}
