// mppx's own client pays a chargepay station: it reads the 402, picks the challenge
// of the intent asked for, makes an SPT at the sandbox's issuer and retries with the
// credential; the station's Payment-Receipt is parsed with mppx's Receipt.
//
// Input (JSON on argv[2]): {url, body, intent, sandbox, apiKey, paymentMethod,
// receiptUrl?}. `url` is a signing forwarder run by the test (the station's agents are
// registered and every request is RFC 9421 signed; mppx drives the 402 through it).
// Output (one JSON line on stdout): {status, body, offered, receipt, settledReceipt?}.
import { Challenge, Credential, Method, Receipt, z } from 'mppx'
import { Mppx, stripe } from 'mppx/client'

const input = JSON.parse(process.argv[2])
if (input.parse) {
  // Parse receipts only: {parse: [header, …]} → {receipts: [Receipt, …]}
  process.stdout.write(JSON.stringify({ receipts: input.parse.map(Receipt.deserialize) }) + '\n')
  process.exit(0)
}

async function createToken({ amount, currency, expiresAt, networkId, paymentMethod }) {
  const form = new URLSearchParams({
    payment_method: paymentMethod,
    'usage_limits[currency]': currency,
    'usage_limits[max_amount]': String(amount),
    'usage_limits[expires_at]': String(expiresAt),
    'seller_details[network_business_profile]': networkId,
  })
  const res = await fetch(`${input.sandbox}/v1/shared_payment/issued_tokens`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${input.apiKey}` },
    body: form,
  })
  if (!res.ok) throw new Error(`issuing an SPT: ${res.status} ${await res.text()}`)
  return (await res.json()).id
}

// The draft's stripe/authorize, registered client-side: mppx ships only `charge`.
// Its request has the charge request's wire shape; the credential is {spt, externalId}.
const authorizeMethod = Method.from({
  name: 'stripe',
  intent: 'authorize',
  schema: {
    credential: { payload: z.object({ externalId: z.optional(z.string()), spt: z.string() }) },
    request: z.object({
      amount: z.string(),
      currency: z.string(),
      externalId: z.optional(z.string()),
      methodDetails: z.object({
        networkId: z.string(),
        paymentMethodTypes: z.array(z.string()),
      }),
    }),
  },
})
const authorize = Method.toClient(authorizeMethod, {
  async createCredential({ challenge }) {
    const request = challenge.request
    const spt = await createToken({
      amount: request.amount,
      currency: request.currency,
      expiresAt: Math.floor(new Date(challenge.expires).getTime() / 1000),
      networkId: request.methodDetails.networkId,
      paymentMethod: input.paymentMethod,
    })
    return Credential.serialize({ challenge, payload: { spt, externalId: request.externalId } })
  },
})
const charge = stripe.charge({ createToken, paymentMethod: input.paymentMethod })

let offered = []
const observe = async (url, init) => {
  const response = await fetch(url, init)
  if (response.status === 402) {
    offered = Challenge.fromResponseList(response).map((c) => `${c.method}/${c.intent}`)
  }
  return response
}
const mppx = Mppx.create({
  methods: [input.intent === 'authorize' ? authorize : charge],
  fetch: observe,
  polyfill: false,
})
const response = await mppx.fetch(input.url, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify(input.body),
})
const text = await response.text()
const out = { status: response.status, body: text, offered, receipt: null }
if (response.headers.get('payment-receipt')) out.receipt = Receipt.fromResponse(response)
process.stdout.write(JSON.stringify(out) + '\n')
