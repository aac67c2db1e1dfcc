// A jangteo gossip peer written with js-libp2p from protocol/SPEC.md alone (§1, §2, §3,
// §8.1, §8.2): it dials one node over TCP (noise, yamux), joins one listing topic with the
// gossip settings SPEC §8.2 fixes (unsigned messages, message id = the first 20 bytes of
// blake3(data)), checks every object it receives (canonical CBOR, content id, listing id,
// ed25519 signature) and publishes listings it encodes and signs itself.
//
// Used by tests/interop.rs. It talks JSON lines: one event per line on stdout, commands one
// per line on stdin. Diagnostics go to stderr.
//
//   node peer.mjs --dial <multiaddr of the node> --category <category>
//
// Events:
//   {"event":"vector","ok":bool,...}           SPEC §9 vector 2 re-made by this encoder
//   {"event":"ready","peer_id":…,"topic":…}    connected, subscribed, the node is on the topic
//   {"event":"message","topic":…,"msg_id":…,"content_id":…,"listing_id":…,"author":…,
//    "canonical":bool,"sig_ok":bool,"listing":{…}}  one gossip message received
//   {"event":"published","listing_id":…,"content_id":…,"author":…,"recipients":n,"bad_signature":bool}
//   {"event":"error","message":…}
// Commands:
//   {"cmd":"publish","title":…,"price":n,"currency":…,"description":…,"bad_signature":bool}
//   {"cmd":"stop"}

import { createInterface } from 'node:readline'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { ed25519 } from '@noble/curves/ed25519.js'
import { blake3 } from '@noble/hashes/blake3.js'
import { bytesToHex, concatBytes, hexToBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { decode, encode, rfc8949EncodeOptions } from 'cborg'
import { createLibp2p } from 'libp2p'

// js-libp2p 3 calls Promise.withResolvers (Node.js 22); Node.js 20 lacks it. Same semantics.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// Bytes travel as hex.
const emit = (obj) => process.stdout.write(
  JSON.stringify(obj, (_, v) => (v instanceof Uint8Array ? bytesToHex(v) : v)) + '\n'
)
const fail = (message) => {
  emit({ event: 'error', message })
  process.exit(1)
}

function arg (name) {
  const i = process.argv.indexOf(name)
  if (i < 0 || i + 1 >= process.argv.length) fail(`missing ${name}`)
  return process.argv[i + 1]
}

// ---- SPEC §1: deterministic CBOR --------------------------------------------------------

// Decoding refuses what §1 forbids that cborg can see (indefinite lengths, undefined,
// duplicate keys, non-shortest integers in strict mode); re-encoding and comparing the bytes
// catches the rest (key order, widths).
const DECODE = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowBigInt: false,
  rejectDuplicateMapKeys: true
}
const cbor = (value) => encode(value, rfc8949EncodeOptions)
const equalBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])

// ---- SPEC §2: envelope ------------------------------------------------------------------

const MAX_OBJECT_BYTES = 32768
const MAX_ANY_OBJECT_BYTES = 131072
const signingInput = (kind, body) => concatBytes(utf8ToBytes('jangteo/v1/' + kind), body)

function signEnvelope (kind, body, secretKey) {
  const author = ed25519.getPublicKey(secretKey)
  const sig = ed25519.sign(signingInput(kind, body), secretKey)
  return cbor([kind, author, body, sig])
}

// The author id of §2: the libp2p peer id of the key.
const authorId = (key) => peerIdFromPublicKey(publicKeyFromRaw(key)).toString()

// Checks one object's bytes as §1–§2 say; returns what it found, never throws.
function checkEnvelope (data) {
  const out = { content_id: bytesToHex(blake3(data)), canonical: false, sig_ok: false }
  if (data.length > MAX_ANY_OBJECT_BYTES) return { ...out, problem: 'too-large' }
  let env
  try {
    env = decode(data, DECODE)
  } catch (e) {
    return { ...out, problem: `envelope: ${e.message}` }
  }
  if (!Array.isArray(env) || env.length !== 4) return { ...out, problem: 'envelope is not an array of 4' }
  const [kind, author, body, sig] = env
  if (typeof kind !== 'string' || !(author instanceof Uint8Array) || author.length !== 32 ||
      !(body instanceof Uint8Array) || !(sig instanceof Uint8Array) || sig.length !== 64) {
    return { ...out, problem: 'envelope fields' }
  }
  if (kind !== 'attestation' && data.length > MAX_OBJECT_BYTES) return { ...out, problem: 'too-large' }
  out.kind = kind
  out.author = authorId(author)
  // As verify_strict (§2): canonical encodings of R, S and the key (noble outside ZIP-215),
  // no small-order key or R. noble checks the cofactored equation where verify_strict checks
  // the cofactorless one; they differ only for an R or key with a torsion component, which
  // no signer makes.
  try {
    const weakKey = ed25519.Point.fromBytes(author).isSmallOrder()
    const weakR = ed25519.Point.fromBytes(sig.subarray(0, 32)).isSmallOrder()
    out.sig_ok = !weakKey && !weakR &&
      ed25519.verify(sig, signingInput(kind, body), author, { zip215: false })
  } catch (e) {
    out.sig_ok = false
  }
  let decodedBody
  try {
    decodedBody = decode(body, DECODE)
  } catch (e) {
    return { ...out, problem: `body: ${e.message}` }
  }
  out.canonical = equalBytes(cbor(env), data) && equalBytes(cbor(decodedBody), body)
  if (kind === 'listing' && decodedBody.nonce instanceof Uint8Array) {
    out.listing_id = listingId(author, decodedBody.nonce)
    const { nonce, ...fields } = decodedBody
    out.listing = fields
  }
  return out
}

// ---- SPEC §3: listing body --------------------------------------------------------------

const listingId = (author, nonce) =>
  bytesToHex(blake3(concatBytes(utf8ToBytes('jangteo/v1/listing-id'), author, nonce)))

// The body of §3 with the required fields and the optional ones given; an optional field
// that would be empty is left out. Keys are sorted by cborg (rfc8949: bytewise order of the
// encoded keys, which for text keys is shorter first).
function listingBody (f) {
  const body = {
    seq: f.seq,
    nonce: f.nonce,
    price: f.price,
    title: f.title,
    status: f.status,
    created: f.created,
    expires: f.expires,
    updated: f.updated,
    category: f.category,
    currency: f.currency,
    quantity: f.quantity
  }
  if (f.desc) body.desc = f.desc
  if (f.condition) body.condition = f.condition
  if (f.location) body.location = f.location
  for (const [k, v] of Object.entries(body)) {
    if (typeof v === 'number' && !Number.isSafeInteger(v)) fail(`listing field ${k} is not an integer`)
  }
  return cbor(body)
}

// SPEC §9 vector 2 (a listing with a Japanese title, no optional fields) made by this
// encoder and signer, compared with the envelope and id SPEC gives.
function vector2 () {
  const secret = hexToBytes('02'.repeat(32))
  const body = listingBody({
    seq: 1,
    nonce: utf8ToBytes('jangteo-vector-2'),
    price: 8000,
    title: '中古の自転車を売ります',
    status: 'active',
    created: 1767225600001,
    expires: 1767830400000,
    updated: 1767225600001,
    category: 'general',
    currency: 'JPY',
    quantity: 2
  })
  const env = signEnvelope('listing', body, secret)
  const id = bytesToHex(blake3(env))
  return {
    event: 'vector',
    ok: id === 'ec3fcdbcc0de05aae7a9580df764c65e7280eafedc556ffcb14a193bf23db4c6',
    id,
    envelope: bytesToHex(env)
  }
}

// ---- the peer ---------------------------------------------------------------------------

const dial = arg('--dial')
const category = arg('--category')
// SPEC §8.2: a listing travels on its category's topic.
const topic = `jangteo/v1/listings/${category}`

const v = vector2()
emit(v)
if (!v.ok) fail('this encoder does not reproduce SPEC vector 2')

// Like a node (SPEC §2), the peer's libp2p identity is its signing key.
const secretKey = ed25519.utils.randomSecretKey()
const libp2p = await createLibp2p({
  privateKey: await generateKeyPairFromSeed('Ed25519', secretKey),
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({
      // SPEC §8.2: anonymous messages (no from, seqno, signature), message id = the first
      // 20 bytes of blake3(data).
      globalSignaturePolicy: 'StrictNoSign',
      msgIdFn: (msg) => blake3(msg.data).subarray(0, 20),
      msgIdToStrFn: (id) => bytesToHex(id),
      // Frames up to what the node reads (§8.2: four times the largest message).
      maxInboundDataLength: 4 * (MAX_ANY_OBJECT_BYTES + 1024),
      allowPublishToZeroTopicPeers: false,
      fallbackToFloodsub: false,
      emitSelf: false
    })
  }
})
const pubsub = libp2p.services.pubsub

pubsub.addEventListener('gossipsub:message', (evt) => {
  const { msg, msgId } = evt.detail
  const checked = checkEnvelope(msg.data)
  emit({
    event: 'message',
    topic: msg.topic,
    type: msg.type,
    // The id gossipsub gave the message (hex, by msgIdToStrFn above).
    msg_id: msgId,
    from_peer: evt.detail.propagationSource.toString(),
    ...checked
  })
})

const target = multiaddr(dial)
const nodePeer = target.getComponents().find((c) => c.name === 'p2p')?.value
if (!nodePeer) fail('the address to dial must end in /p2p/<peer id>')
pubsub.subscribe(topic)
try {
  await libp2p.dial(target, { signal: AbortSignal.timeout(20000) })
} catch (e) {
  fail(`dial ${dial}: ${e.message}`)
}

// Ready once the node's subscription to the topic has reached us: from then on a publish
// reaches it.
await new Promise((resolve) => {
  const check = () => {
    if (pubsub.getSubscribers(topic).some((p) => p.toString() === nodePeer)) {
      pubsub.removeEventListener('subscription-change', check)
      resolve()
    }
  }
  pubsub.addEventListener('subscription-change', check)
  check()
})
emit({ event: 'ready', peer_id: libp2p.peerId.toString(), topic, protocols: pubsub.protocols })

async function publish (cmd) {
  const now = Date.now()
  const nonce = randomBytes(16)
  const body = listingBody({
    seq: 1,
    nonce,
    price: cmd.price,
    title: cmd.title,
    status: 'active',
    created: now,
    expires: now + 30 * 24 * 3600 * 1000,
    updated: now,
    category,
    currency: cmd.currency,
    quantity: 1,
    desc: cmd.description
  })
  let data = signEnvelope('listing', body, secretKey)
  if (cmd.bad_signature) {
    // Flip one bit of S's low byte: still canonical, no longer a signature of this body.
    data = data.slice()
    data[data.length - 32] ^= 0x01
  }
  const author = ed25519.getPublicKey(secretKey)
  const result = await pubsub.publish(topic, data)
  emit({
    event: 'published',
    listing_id: listingId(author, nonce),
    content_id: bytesToHex(blake3(data)),
    author: authorId(author),
    recipients: result.recipients.map((p) => p.toString()),
    bad_signature: Boolean(cmd.bad_signature),
    sig_ok: checkEnvelope(data).sig_ok
  })
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (e) {
    fail(`not a JSON command: ${line}`)
  }
  if (cmd.cmd === 'publish') {
    try {
      await publish(cmd)
    } catch (e) {
      emit({ event: 'error', message: `publish: ${e.message}` })
    }
  } else if (cmd.cmd === 'stop') {
    break
  } else {
    fail(`unknown command ${cmd.cmd}`)
  }
}
await libp2p.stop()
process.exit(0)
