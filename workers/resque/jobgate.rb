# frozen_string_literal: true

# jobgate's worker kit for Resque: checks the envelope jobgate wraps around every job
# (workers/ENVELOPE.md) and opens its sealed secrets, so that a job class runs only jobs
# that jobgate wrote, for that class and queue, before their expiry.
#
# Jobgate::Verifier holds the keys and checks one job's args; Jobgate::Resque puts it in
# front of a Resque job class; Jobgate.canonicalize is the RFC 8785 form whose hash is the
# job's leaf in the tree the signature covers. It needs the standard library and rbnacl
# (libsodium) only.

require 'base64'
require 'digest'
require 'json'
require 'rbnacl'

module Jobgate
  # Why a job was refused: one of the reason words of ENVELOPE.md, in #reason.
  class Refused < StandardError
    attr_reader :reason

    def initialize(reason, detail)
      @reason = reason
      super("jobgate: #{reason}: #{detail}")
    end
  end

  # A job that passed every check; args are the producer's, secrets opened.
  Job = Struct.new(:id, :tenant, :sub, :queue, :class_name, :iat, :exp, :kid, :args,
                   keyword_init: true)

  # A key id: what `jobgate keygen` accepts as NAME.
  KID = /\A[A-Za-z0-9_-]{1,64}\z/.freeze

  ESCAPES = { '"' => '\\"', '\\' => '\\\\', "\b" => '\\b', "\t" => '\\t', "\n" => '\\n',
              "\f" => '\\f', "\r" => '\\r' }.freeze

  class << self
    attr_writer :verifier

    # The verifier Jobgate::Resque uses: the one assigned, else one loaded from the key
    # directory named by JOBGATE_KEYS on first use.
    def verifier
      @verifier ||= Verifier.from_dir(ENV.fetch('JOBGATE_KEYS') do
        raise ArgumentError, 'jobgate: assign Jobgate.verifier or set JOBGATE_KEYS'
      end)
    end

    # The RFC 8785 (JCS) text of a JSON value as JSON.parse returns it. Integers are
    # written as their exact digits, however big. Raises ArgumentError for what has no
    # JSON form: another type, a non-finite Float, a string that is not valid UTF-8.
    def canonicalize(value)
      case value
      when Hash then canonical_object(value)
      when Array then "[#{value.map { |element| canonicalize(element) }.join(',')}]"
      when String then canonical_string(value)
      when Integer then value.to_s
      when Float then canonical_float(value)
      when true then 'true'
      when false then 'false'
      when nil then 'null'
      else raise ArgumentError, "jobgate: a #{value.class} has no JSON form"
      end
    end

    # Decodes unpadded base64url (RFC 4648 section 5) of exactly `size` bytes, or of any
    # size when size is nil; nil for anything else, non-canonical trailing bits included.
    def decode_base64url(text, size = nil)
      return nil unless text.is_a?(String) && text.match?(/\A[A-Za-z0-9_-]*\z/)

      bytes = Base64.urlsafe_decode64(text)
      bytes if size.nil? || bytes.bytesize == size
    rescue ArgumentError
      nil
    end

    private

    # Members sorted by their names' UTF-16 code units, which is the byte order of the
    # names in UTF-16BE.
    def canonical_object(object)
      members = object.map do |name, value|
        raise ArgumentError, 'jobgate: a member name is not a String' unless name.is_a?(String)

        quoted = canonical_string(name)
        [name.encode(Encoding::UTF_16BE).b, "#{quoted}:#{canonicalize(value)}"]
      end
      "{#{members.sort_by(&:first).map(&:last).join(',')}}"
    end

    # Escapes only '"', '\' and the controls below U+0020 (RFC 8785 section 3.2.2.2).
    def canonical_string(text)
      text = text.encode(Encoding::UTF_8) unless text.encoding == Encoding::UTF_8
      raise ArgumentError, 'jobgate: a string is not valid UTF-8' unless text.valid_encoding?

      escaped = text.gsub(/["\\\u0000-\u001f]/) do |char|
        ESCAPES[char] || format('\\u%04x', char.ord)
      end
      "\"#{escaped}\""
    rescue EncodingError
      raise ArgumentError, 'jobgate: a string is not valid UTF-8'
    end

    # ECMAScript's Number::toString. Float#to_s already finds the shortest digits that
    # read back as the same double, as ECMAScript does; only the layout differs.
    def canonical_float(value)
      raise ArgumentError, 'jobgate: NaN and Infinity have no JSON form' unless value.finite?
      return '0' if value.zero?

      digits, point = shortest_digits(value.abs)
      (value.negative? ? '-' : '') + ecmascript_layout(digits, point)
    end

    # The digits of a positive Float without leading or trailing zeros, and where the
    # decimal point falls: value = 0.DIGITS * 10**point.
    def shortest_digits(value)
      mantissa, exponent = value.to_s.split('e')
      whole, fraction = mantissa.split('.')
      digits = whole + fraction.to_s
      significant = digits.sub(/\A0+/, '')
      point = whole.length + exponent.to_i - (digits.length - significant.length)
      [significant.sub(/0+\z/, ''), point]
    end

    # Steps 6 to 10 of ECMA-262's Number::toString, with k = digits.length and n = point.
    def ecmascript_layout(digits, point)
      count = digits.length
      if count <= point && point <= 21
        digits + ('0' * (point - count))
      elsif point.positive? && point <= 21
        "#{digits[0, point]}.#{digits[point..]}"
      elsif point > -6 && point <= 0
        "0.#{'0' * -point}#{digits}"
      else
        exponent = point - 1
        mantissa = count == 1 ? digits : "#{digits[0]}.#{digits[1..]}"
        "#{mantissa}e#{exponent.negative? ? '-' : '+'}#{exponent.abs}"
      end
    end
  end

  # Checks jobs against the envelope rules and opens their sealed values. It holds the
  # signers' Ed25519 public keys and the workers' X25519 secret keys, by key id, and
  # nothing else: one Verifier may serve any number of jobs and threads.
  class Verifier
    MEMBERS = { 'jobgate' => Integer, 'id' => String, 'tenant' => String, 'sub' => String,
                'queue' => String, 'class' => String, 'iat' => Integer, 'exp' => Integer,
                'args' => Array, 'sealed' => Array, 'kid' => String, 'proof' => Hash,
                'sig' => String }.freeze
    PROOF_MEMBERS = %w[index path size].freeze
    PROOF_MAX_SIZE = 65_536
    PROOF_MAX_PATH = 16
    HASH_BYTES = 32
    # RFC 9162's prefixes, which keep a leaf from passing for an interior node.
    LEAF_PREFIX = "\x00".b.freeze
    NODE_PREFIX = "\x01".b.freeze
    TREE_LABEL = 'jobgate-tree-v1'.b.freeze
    SEALED_MEMBERS = %w[ct epk kid nonce].freeze
    SEAL_LABEL = 'jobgate-seal-v1'.b.freeze
    TAG_BYTES = RbNaCl::AEAD::XChaCha20Poly1305IETF.tag_bytes
    X25519 = RbNaCl::GroupElements::Curve25519
    MISSING = Object.new.freeze

    # Loads every KID.sign.pub and KID.seal.key in dir, one base64url line each.
    def self.from_dir(dir, **options)
      signing_keys = read_keys(dir, '.sign.pub')
      raise ArgumentError, "jobgate: no *.sign.pub in #{dir}" if signing_keys.empty?

      new(signing_keys: signing_keys, sealing_keys: read_keys(dir, '.seal.key'), **options)
    end

    def self.read_keys(dir, suffix)
      names = Dir.children(dir).select { |name| name.end_with?(suffix) }.sort
      names.to_h { |name| [name.delete_suffix(suffix), File.read(File.join(dir, name)).strip] }
    end
    private_class_method :read_keys

    # Keys are base64url Strings or 32 raw bytes. clock returns the current Unix second;
    # leeway is how many seconds past exp a job still runs.
    def initialize(signing_keys:, sealing_keys: {}, leeway: 0, clock: -> { Time.now.to_i })
      @signing_keys = signing_keys.to_h do |kid, key|
        [check_kid(kid), RbNaCl::VerifyKey.new(key_bytes(kid, key))]
      end
      @sealing_keys = sealing_keys.to_h do |kid, key|
        secret = key_bytes(check_kid(kid), key)
        [kid, [secret, X25519.base.mult(secret).to_bytes]]
      end
      @leeway = leeway
      @clock = clock
    end

    # Checks a Resque job's args in ENVELOPE.md's order and returns the Job. class_name is
    # the class the worker runs it as, queue the queue it took it from, payload_class the
    # payload's own "class"; each is checked when given, and skipped when nil. Raises
    # Refused.
    def open(args, class_name: nil, queue: nil, payload_class: nil)
      envelope = envelope_of(args)
      check_members(envelope)
      sealed = sealed_values(envelope)
      check_signature(envelope)
      check_context(envelope, class_name, queue, payload_class)
      check_expiry(envelope)
      Job.new(id: envelope['id'], tenant: envelope['tenant'], sub: envelope['sub'],
              queue: envelope['queue'], class_name: envelope['class'], iat: envelope['iat'],
              exp: envelope['exp'], kid: envelope['kid'], args: open_sealed(envelope, sealed))
    end

    private

    def refuse(reason, detail)
      raise Refused.new(reason, detail)
    end

    def check_kid(kid)
      return kid if kid.is_a?(String) && kid.match?(KID)

      raise ArgumentError, "jobgate: #{kid.inspect} is not a key id"
    end

    # The message names the key, never its bytes.
    def key_bytes(kid, key)
      raw = key.is_a?(String) && key.bytesize == 32
      bytes = raw ? key.b : Jobgate.decode_base64url(key.to_s.strip, 32)
      raise ArgumentError, "jobgate: key #{kid} is not 32 bytes or their base64url" unless bytes

      bytes
    end

    def envelope_of(args)
      envelope = args[0] if args.is_a?(Array) && args.length == 1
      unless envelope.is_a?(Hash) && envelope.key?('jobgate')
        refuse('unsigned', 'args are not one jobgate envelope')
      end
      version = envelope['jobgate']
      unless version.is_a?(Integer) && version == 1
        refuse('unsupported-version', "version #{version.inspect[0, 32]}")
      end
      envelope
    end

    def check_members(envelope)
      missing = MEMBERS.keys - envelope.keys
      refuse('malformed', "no #{missing.first}") unless missing.empty?
      extra = envelope.keys - MEMBERS.keys
      refuse('malformed', "extra member #{extra.first.inspect[0, 64]}") unless extra.empty?
      wrong = MEMBERS.keys.find { |name| !envelope[name].is_a?(MEMBERS[name]) }
      refuse('malformed', "#{wrong} is not of type #{MEMBERS[wrong]}") if wrong
      refuse('malformed', 'sealed holds a non-String') unless envelope['sealed'].all?(String)
      unless Jobgate.decode_base64url(envelope['sig'], 64)
        refuse('malformed', 'sig is not 64 bytes of base64url')
      end
      return if proof_shape?(envelope['proof'])

      refuse('malformed', 'proof is not an index, a size and a path of 32-byte hashes')
    end

    # Whether proof is {"index", "path", "size"} within their bounds. Whether the path's
    # length fits the index and size is found while computing the root: that is a bad
    # signature, as a path of the right length to the wrong root is.
    def proof_shape?(proof)
      exact = proof.size == PROOF_MEMBERS.size && PROOF_MEMBERS.all? { |name| proof.key?(name) }
      return false unless exact

      index, path, size = proof.values_at(*PROOF_MEMBERS)
      size.is_a?(Integer) && size.between?(1, PROOF_MAX_SIZE) &&
        index.is_a?(Integer) && index.between?(0, size - 1) &&
        path.is_a?(Array) && path.length <= PROOF_MAX_PATH &&
        path.all? { |hash| Jobgate.decode_base64url(hash, HASH_BYTES) }
    end

    # Each sealed pointer with its reference tokens and the value it names.
    def sealed_values(envelope)
      envelope['sealed'].map do |pointer|
        tokens = pointer_tokens(pointer)
        value = tokens ? value_at(envelope['args'], tokens) : MISSING
        if value.equal?(MISSING)
          refuse('malformed', "sealed entry #{pointer.inspect[0, 64]} names no value in args")
        end
        [pointer, tokens, value]
      end
    end

    # The reference tokens of an RFC 6901 pointer, or nil when it is not one. The empty
    # pointer names args itself, not a value in it.
    def pointer_tokens(pointer)
      return nil unless pointer.start_with?('/') && !pointer.match?(/~(?![01])/)

      pointer.split('/', -1).drop(1).map { |token| token.gsub('~1', '/').gsub('~0', '~') }
    end

    def value_at(args, tokens)
      tokens.reduce(args) { |node, token| child(node, token) }
    end

    def child(node, token)
      case node
      when Array
        index = token.match?(/\A(0|[1-9][0-9]*)\z/) ? token.to_i : node.length
        index < node.length ? node[index] : MISSING
      when Hash then node.fetch(token, MISSING)
      else MISSING
      end
    end

    def check_signature(envelope)
      kid = envelope['kid']
      key = @signing_keys[kid]
      refuse('unknown-key', "no signing key #{kid.inspect[0, 80]}") unless key
      root = tree_root(leaf_hash(envelope), envelope['proof'])
      refuse('bad-signature', "the proof's path does not fit its index and size") unless root
      key.verify(Jobgate.decode_base64url(envelope['sig'], 64), TREE_LABEL + root)
    rescue ArgumentError
      refuse('bad-signature', 'the envelope holds a value with no canonical form')
    rescue RbNaCl::BadSignatureError
      refuse('bad-signature', "the signature does not verify with key #{kid}")
    end

    # The envelope's leaf: the hash of its canonical form without proof and sig, which are
    # made after the tree they describe. Raises ArgumentError when there is no such form.
    def leaf_hash(envelope)
      signed = envelope.reject { |name, _| %w[proof sig].include?(name) }
      Digest::SHA256.digest(LEAF_PREFIX + Jobgate.canonicalize(signed).b)
    end

    # The root that proof's path leads to from leaf, computed as RFC 9162 section 2.1.3.2
    # verifies an inclusion proof; nil when the path is too long or too short for the
    # proof's index and size. position and last follow the node and the tree's last node
    # up, one level per hash.
    def tree_root(leaf, proof)
      position = proof['index']
      last = proof['size'] - 1
      root = leaf
      proof['path'].each do |encoded|
        return nil if last.zero?

        sibling = Jobgate.decode_base64url(encoded, HASH_BYTES)
        if position.odd? || position == last
          root = node_hash(sibling, root)
          # On the tree's right edge a node may have no sibling: it moves up as it is.
          position, last = position >> 1, last >> 1 while position.even? && position.positive?
        else
          root = node_hash(root, sibling)
        end
        position >>= 1
        last >>= 1
      end
      root if last.zero?
    end

    def node_hash(left, right)
      Digest::SHA256.digest(NODE_PREFIX + left + right)
    end

    def check_context(envelope, class_name, queue, payload_class)
      [payload_class, class_name].compact.map(&:to_s).each do |name|
        next if name == envelope['class']

        refuse('wrong-class', "run as #{name}, written for #{envelope['class']}")
      end
      return if queue.nil? || queue.to_s == envelope['queue']

      refuse('wrong-queue', "taken from #{queue}, written to #{envelope['queue']}")
    end

    def check_expiry(envelope)
      now = @clock.call
      return if now <= envelope['exp'] + @leeway

      refuse('expired', "expired at #{envelope['exp']}, now #{now}")
    end

    # A copy of args with every sealed value opened. The args given stay sealed, so that
    # a failure record, which Resque makes from them, never holds a secret.
    def open_sealed(envelope, sealed)
      sealed.each do |pointer, _, value|
        kid = value['kid'] if value.is_a?(Hash)
        next unless kid.is_a?(String) && !@sealing_keys.key?(kid)

        refuse('unknown-seal-key', "#{pointer} is sealed to #{kid}")
      end
      opened = sealed.map do |pointer, tokens, value|
        [tokens, open_value(envelope, pointer, value)]
      end

      args = Marshal.load(Marshal.dump(envelope['args']))
      opened.each do |tokens, secret|
        parent = value_at(args, tokens[0...-1])
        parent[parent.is_a?(Array) ? tokens.last.to_i : tokens.last] = secret
      end
      args
    end

    # Opens one sealed value in this job's context; a refusal never says what it held.
    def open_value(envelope, pointer, value)
      epk, nonce, ciphertext = sealed_parts(value)
      refuse('unseal-failed', "#{pointer} is not a sealed value") unless epk
      secret, public = @sealing_keys.fetch(value['kid'])
      shared = X25519.new(epk).mult(secret).to_bytes
      key = RbNaCl::Hash.blake2b(SEAL_LABEL + epk + public, key: shared, digest_size: 32)
      context = Jobgate.canonicalize('class' => envelope['class'], 'field' => pointer,
                                     'id' => envelope['id'], 'queue' => envelope['queue']).b
      plain = RbNaCl::AEAD::XChaCha20Poly1305IETF.new(key).decrypt(nonce, ciphertext, context)
      return plain if plain.force_encoding(Encoding::UTF_8).valid_encoding?

      refuse('unseal-failed', "#{pointer} is not UTF-8")
    rescue RbNaCl::CryptoError
      # Also what RbNaCl raises when the shared secret would be all zero.
      refuse('unseal-failed', "#{pointer} does not open in this job's context")
    end

    # [epk, nonce, ct] as bytes, or [] unless value is exactly the four members of a
    # sealed value, with binary members of the right sizes.
    def sealed_parts(value)
      return [] unless value.is_a?(Hash) && value.keys.sort == SEALED_MEMBERS
      return [] unless value['kid'].is_a?(String)

      parts = [Jobgate.decode_base64url(value['epk'], 32),
               Jobgate.decode_base64url(value['nonce'], 24),
               Jobgate.decode_base64url(value['ct'])]
      parts.all? && parts[2].bytesize >= TAG_BYTES ? parts : []
    end
  end

  # Extended by a Resque job class, in place of a perform of its own:
  #
  #   class SendInvoice
  #     extend Jobgate::Resque
  #     @queue = :invoices
  #     def self.perform_verified(invoice) ... end
  #   end
  #
  # Resque calls perform with the payload's args, which hold the envelope; perform checks
  # it and then calls perform_verified with the producer's arguments, secrets opened. A
  # refusal raises Refused, so Resque records the job as failed with the reason.
  module Resque
    def perform(*args)
      job = Jobgate.verifier.open(args, class_name: name.to_s, queue: jobgate_queue)
      outer = Thread.current[:jobgate_job]
      Thread.current[:jobgate_job] = job
      perform_verified(*job.args)
    ensure
      Thread.current[:jobgate_job] = outer if job
    end

    # The Job being performed (its id, tenant, sub, ...), inside perform_verified.
    def jobgate_job
      Thread.current[:jobgate_job]
    end

    private

    # The class's queue, found as Resque finds it.
    def jobgate_queue
      queue = instance_variable_get(:@queue) || (respond_to?(:queue) && self.queue)
      raise ArgumentError, "jobgate: #{name} names no @queue" unless queue

      queue.to_s
    end
  end
end
