# frozen_string_literal: true

# A stand-in for jobgate's writing side in the Ruby kit's tests: it signs envelopes and
# seals values as workers/ENVELOPE.md describes, with keys it generates, and hands out a
# Verifier holding the matching worker keys.

require 'json'
require 'rbnacl'
require 'jobgate'

class Producer
  X25519 = RbNaCl::GroupElements::Curve25519

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

  # Signs envelope (again, after a change to it) and returns it.
  def sign(envelope)
    envelope.delete('sig')
    signature = @signing_key.sign(Jobgate.canonicalize(envelope).b)
    envelope.merge!('sig' => Producer.base64url(signature))
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

  # Sets the value at an RFC 6901 pointer inside args.
  def place(args, pointer, value)
    tokens = pointer.split('/', -1).drop(1).map { |token| token.gsub('~1', '/').gsub('~0', '~') }
    parent = tokens[0...-1].reduce(args) do |node, token|
      node.is_a?(Array) ? node[token.to_i] : node[token]
    end
    parent[parent.is_a?(Array) ? tokens.last.to_i : tokens.last] = value
  end
end
