# frozen_string_literal: true

# A stand-in for jobgate's writing side in the Ruby kit's tests: it signs envelopes, alone
# or in batches under one signature, and seals values as workers/ENVELOPE.md describes,
# with keys it generates, and hands out a Verifier holding the matching worker keys. It
# builds its trees top down, as RFC 9162 section 2.1 defines them, so that the kit's
# bottom-up walk of a path is checked against a separate account of the same tree.

require 'digest'
require 'json'
require 'rbnacl'
require 'jobgate'

class Producer
  X25519 = RbNaCl::GroupElements::Curve25519
  TREE_LABEL = 'jobgate-tree-v1'

  attr_reader :sign_kid, :seal_kid

  def initialize(sign_kid: 'sign-test', seal_kid: 'workers-test')
    @sign_kid = sign_kid
    @seal_kid = seal_kid
    @signing_key = RbNaCl::SigningKey.generate
    @seal_secret = RbNaCl::Random.random_bytes(32)
    @seal_public = X25519.base.mult(@seal_secret).to_bytes
  end

  def self.base64url(bytes)
    Base64.urlsafe_encode64(bytes, padding: false)
  end

  # The Resque payload text jobgate would push for envelope.
  def self.payload(envelope)
    JSON.generate('class' => envelope['class'], 'args' => [envelope])
  end

  # The public half of the signing key, as a .sign.pub file holds it.
  def signing_keys
    { sign_kid => Producer.base64url(@signing_key.verify_key.to_bytes) }
  end

  # The workers' secret key, as a .seal.key file holds it.
  def sealing_keys
    { seal_kid => Producer.base64url(@seal_secret) }
  end

  def verifier(now: nil, clock: -> { now }, **options)
    Jobgate::Verifier.new(signing_keys: signing_keys, sealing_keys: sealing_keys,
                          clock: clock, **options)
  end

  # A signed envelope for args; secrets maps pointers into args to the text sealed there.
  def envelope(args:, secrets: {}, queue: 'invoices', class_name: 'SendInvoice',
               iat: 1_764_806_400, exp: 1_765_411_200, id: '019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a63')
    envelope = { 'jobgate' => 1, 'id' => id, 'tenant' => 'acme', 'sub' => 'billing-service',
                 'queue' => queue, 'class' => class_name, 'iat' => iat, 'exp' => exp,
                 'args' => Marshal.load(Marshal.dump(args)), 'sealed' => secrets.keys,
                 'kid' => sign_kid }
    secrets.each do |pointer, plain|
      place(envelope['args'], pointer, seal(envelope, pointer, plain))
    end
    sign(envelope)
  end

  # Signs envelope alone (again, after a change to it) and returns it.
  def sign(envelope)
    sign_batch([envelope]).first
  end

  # Signs envelopes under one signature, as jobgate signs the jobs of one event-loop turn,
  # and returns them, each with its proof. They take the leaves from `at` on of a tree of
  # `size` leaves; the other leaves are random, as other jobs' leaves look to a worker.
  def sign_batch(envelopes, size: envelopes.length, at: 0)
    leaves = Array.new(size) { RbNaCl::Random.random_bytes(32) }
    envelopes.each_with_index { |envelope, offset| leaves[at + offset] = leaf(envelope) }
    sig = signature(TREE_LABEL.b + tree_hash(leaves))
    envelopes.each_with_index.map do |envelope, offset|
      path = inclusion_path(at + offset, leaves).map { |hash| Producer.base64url(hash) }
      envelope.merge!('proof' => { 'index' => at + offset, 'path' => path, 'size' => size },
                      'sig' => sig)
    end
  end

  # The signing key's Ed25519 signature of message, as sig holds it.
  def signature(message)
    Producer.base64url(@signing_key.sign(message))
  end

  # The hash of envelope's canonical form without proof and sig.
  def leaf(envelope)
    signed = envelope.reject { |name, _| %w[proof sig].include?(name) }
    Digest::SHA256.digest("\x00".b + Jobgate.canonicalize(signed).b)
  end

  def seal(envelope, pointer, plain)
    ephemeral_secret = RbNaCl::Random.random_bytes(32)
    epk = X25519.base.mult(ephemeral_secret).to_bytes
    shared = X25519.new(@seal_public).mult(ephemeral_secret).to_bytes
    key = RbNaCl::Hash.blake2b('jobgate-seal-v1'.b + epk + @seal_public, key: shared,
                                                                         digest_size: 32)
    nonce = RbNaCl::Random.random_bytes(24)
    context = Jobgate.canonicalize('class' => envelope['class'], 'field' => pointer,
                                   'id' => envelope['id'], 'queue' => envelope['queue']).b
    ciphertext = RbNaCl::AEAD::XChaCha20Poly1305IETF.new(key).encrypt(nonce, plain, context)
    { 'kid' => seal_kid, 'epk' => Producer.base64url(epk),
      'nonce' => Producer.base64url(nonce), 'ct' => Producer.base64url(ciphertext) }
  end

  private

  # MTH of RFC 9162 section 2.1.1 over leaf hashes.
  def tree_hash(leaves)
    return leaves[0] if leaves.length == 1

    split = left_size(leaves.length)
    Digest::SHA256.digest("\x01".b + tree_hash(leaves[0...split]) + tree_hash(leaves[split..]))
  end

  # PATH(m, D[n]) of RFC 9162 section 2.1.3.1: the hashes that lead from leaf m to the
  # root, nearest first.
  def inclusion_path(index, leaves)
    return [] if leaves.length == 1

    split = left_size(leaves.length)
    if index < split
      inclusion_path(index, leaves[0...split]) + [tree_hash(leaves[split..])]
    else
      inclusion_path(index - split, leaves[split..]) + [tree_hash(leaves[0...split])]
    end
  end

  # The largest power of two below count: how many leaves the left subtree holds.
  def left_size(count)
    split = 1
    split *= 2 while split * 2 < count
    split
  end

  # Sets the value at an RFC 6901 pointer inside args.
  def place(args, pointer, value)
    tokens = pointer.split('/', -1).drop(1).map { |token| token.gsub('~1', '/').gsub('~0', '~') }
    parent = tokens[0...-1].reduce(args) do |node, token|
      node.is_a?(Array) ? node[token.to_i] : node[token]
    end
    parent[parent.is_a?(Array) ? tokens.last.to_i : tokens.last] = value
  end
end
