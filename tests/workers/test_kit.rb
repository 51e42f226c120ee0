# frozen_string_literal: true

# Tests of the Ruby worker kit (workers/resque/jobgate.rb): RFC 8785 against the reference
# vectors; the shared envelope vectors written by jobgate's C code; envelopes built here
# for each refusal; and jobs going through a real redis-server as Resque runs them.
# Run from the repository root: ruby tests/workers/test_kit.rb

$LOAD_PATH.unshift(File.expand_path('../../workers/resque', __dir__), __dir__)
require 'minitest/autorun'
require 'tmpdir'
require 'jobgate'
require 'producer'
require 'resque_stand_in'

SHARED = ENV['JOBGATE_SHARED'] || File.expand_path('../../../shared', __dir__)
ENVELOPE_VECTORS = File.expand_path('../vectors/envelope-v1.json', __dir__)
NOW = 1_765_000_000
SECRET = 'tok_visa_4242 🔑'

def read_utf8(path)
  File.read(path, encoding: Encoding::UTF_8)
end

# Defines a top-level job class for the block, as a worker's code would, and removes it
# after. The class records [job, args] for every perform_verified in the array yielded;
# its first `timeouts` performs raise instead, as a flaky downstream service would.
def with_job_class(name, queue, timeouts: 0)
  performed = []
  job_class = Class.new do
    extend Jobgate::Resque
    @queue = queue
    define_singleton_method(:perform_verified) do |*args|
      raise 'card processor timed out' if (timeouts -= 1) >= 0

      performed << [jobgate_job, args]
    end
  end
  Object.const_set(name, job_class)
  yield performed
ensure
  Object.send(:remove_const, name) if Object.const_defined?(name, false)
end

class CanonicalizeTest < Minitest::Test
  JCS_VECTORS = File.join(SHARED, 'jcs-vectors')

  def test_reference_vectors_are_present
    refute_empty Dir[File.join(JCS_VECTORS, 'input', '*.json')], "none in #{JCS_VECTORS}"
  end

  Dir[File.join(JCS_VECTORS, 'input', '*.json')].sort.each do |input|
    define_method("test_reference_vector_#{File.basename(input, '.json')}") do
      expected = read_utf8(File.join(JCS_VECTORS, 'output', File.basename(input)))
      assert_equal expected, Jobgate.canonicalize(JSON.parse(read_utf8(input)))
    end
  end

  NUMBERS = [[1.0, '1'], [1e21, '1e+21'], [1e20, '100000000000000000000'], [5e-7, '5e-7'],
             [1e-6, '0.000001'], [-0.0, '0'], [0, '0'], [19.99, '19.99'], [-2.5, '-2.5'],
             [123_456_789_012_345_680_000.0, '123456789012345680000'], [1.5e-7, '1.5e-7'],
             [0.1 + 0.2, '0.30000000000000004'], [5e-324, '5e-324'],
             [-1.7976931348623157e308, '-1.7976931348623157e+308'],
             [9_007_199_254_740_992, '9007199254740992'], [2**64 + 1, '18446744073709551617'],
             [-(10**30), '-1000000000000000000000000000000']].freeze

  def test_numbers_as_ecmascript_writes_them_and_integers_exactly
    NUMBERS.each { |value, text| assert_equal text, Jobgate.canonicalize(value), "for #{value}" }
    assert_equal '[1000,1e+30,0.002]', Jobgate.canonicalize(JSON.parse('[1000.0, 1E30, 2e-3]'))
  end

  def test_strings_escape_only_quote_backslash_and_controls
    text = "\u0000\b\t\n\f\r\u001f\u007f/\"\\é€😂"
    expected = "\"\\u0000\\b\\t\\n\\f\\r\\u001f\u007f/\\\"\\\\é€😂\""
    assert_equal expected, Jobgate.canonicalize(text)
  end

  def test_members_sort_by_utf16_code_units
    object = { "\u{ffff}" => 1, "\u{10000}" => 2, 'b' => 3, 'a' => 4, '' => 5, "\n" => 6 }
    expected = "{\"\":5,\"\\n\":6,\"a\":4,\"b\":3,\"\u{10000}\":2,\"\u{ffff}\":1}"
    assert_equal expected, Jobgate.canonicalize(object)
  end

  def test_values_with_no_json_form_are_refused
    not_utf8 = "\xC3(".dup.force_encoding(Encoding::UTF_8)
    [Float::NAN, Float::INFINITY, :symbol, { 1 => 2 }, "\xff".b, not_utf8].each do |value|
      assert_raises(ArgumentError, value.inspect) { Jobgate.canonicalize(value) }
    end
  end
end

# Checks that need a signed envelope, built here with keys generated for each test.
class EnvelopeTest < Minitest::Test
  ARGS = [{ 'invoice_id' => 1042, 'amount' => 19.99, 'note' => 'naïve ☃',
            'card_token' => nil }].freeze
  OPENED = [ARGS[0].merge('card_token' => SECRET)].freeze
  CONTEXT = { class_name: 'SendInvoice', queue: 'invoices', payload_class: 'SendInvoice' }.freeze

  def setup
    @producer = Producer.new
    @verifier = @producer.verifier(now: NOW)
  end

  def build(args: ARGS, secrets: { '/0/card_token' => SECRET }, **options)
    @producer.envelope(args: args, secrets: secrets, **options)
  end

  # Opens envelope as a worker would after reading its payload from Redis.
  def open(envelope, verifier: @verifier, **context)
    payload = JSON.parse(Producer.payload(envelope))
    verifier.open(payload['args'], **CONTEXT, **context)
  end

  def assert_refused(reason, envelope, verifier: @verifier, **context)
    args = JSON.parse(Producer.payload(envelope))['args']
    assert_args_refused(reason, args, verifier: verifier, **context)
  end

  # Returns the Refused, for a test that also checks its detail.
  def assert_args_refused(reason, args, verifier: @verifier, **context)
    error = assert_raises(Jobgate::Refused) { verifier.open(args, **CONTEXT, **context) }
    assert_equal reason, error.reason, error.message
    assert_match(/\Ajobgate: #{reason}: ./, error.message)
    refute_includes error.message, SECRET
    error
  end

  # Envelopes of count jobs without secrets, each with its own id, under one signature.
  def batch(count, **options)
    envelopes = Array.new(count) do |number|
      build(id: format('019ae5b8-47c0-7c3e-9a4e-%012d', number), secrets: {})
    end
    @producer.sign_batch(envelopes, **options)
  end

  # A copy of envelope whose proof has the members given changed, not signed again.
  def with_proof(envelope, **changes)
    envelope.merge('proof' => envelope['proof'].merge(changes.transform_keys(&:to_s)))
  end

  # A hash in base64url, as the leaf of some other job would be.
  def hash_text(seed)
    Producer.base64url(Digest::SHA256.digest(seed))
  end

  def flip_first_byte(text)
    bytes = Jobgate.decode_base64url(text).bytes
    bytes[0] ^= 1
    Producer.base64url(bytes.pack('C*'))
  end

  def test_a_valid_job_opens_with_its_secret
    job = open(build)
    assert_equal OPENED, job.args
    assert_equal Encoding::UTF_8, job.args[0]['card_token'].encoding
    assert_equal ['019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a63', 'acme', 'billing-service', 'invoices',
                  'SendInvoice', 1_764_806_400, 1_765_411_200, 'sign-test'],
                 job.to_a[0...-1]
  end

  def test_opening_leaves_the_given_args_sealed
    args = JSON.parse(Producer.payload(build)).fetch('args')
    @verifier.open(args, **CONTEXT)
    assert_equal %w[ct epk kid nonce], args[0]['args'][0]['card_token'].keys.sort
  end

  def test_secrets_anywhere_in_args_open_including_escaped_pointers
    args = [{ 'a/b' => nil, 'm~n' => { 'cards' => ['x', nil] } }, nil, 7]
    secrets = { '/0/a~1b' => 'first', '/0/m~0n/cards/1' => 'second', '/1' => '' }
    job = open(build(args: args, secrets: secrets))
    assert_equal [{ 'a/b' => 'first', 'm~n' => { 'cards' => %w[x second] } }, '', 7], job.args
  end

  def test_a_job_without_secrets_and_numbers_beyond_doubles_open_exactly
    args = [2**64 + 1, -(2**70), 1000.0, 1e21, 5e-7, 'plain']
    assert_equal args, open(build(args: args, secrets: {})).args
  end

  def test_a_flipped_signature_byte_is_a_bad_signature
    envelope = build
    envelope['sig'] = flip_first_byte(envelope['sig'])
    assert_refused 'bad-signature', envelope
  end

  def test_any_change_under_the_signature_is_a_bad_signature
    changes = { 'id' => '019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a64', 'tenant' => 'evil',
                'sub' => 'other', 'iat' => 1, 'exp' => 1_900_000_000, 'sealed' => [] }
    changes.each { |member, value| assert_refused 'bad-signature', build.merge(member => value) }
    envelope = build
    envelope['args'][0]['invoice_id'] = 1043
    assert_refused 'bad-signature', envelope
    envelope = build(args: [2**64 + 1], secrets: {})
    envelope['args'] = [2**64 + 2]
    assert_refused 'bad-signature', envelope
  end

  def test_a_number_with_no_canonical_form_is_a_bad_signature
    payload = Producer.payload(build).sub('"invoice_id":1042', '"invoice_id":1e400')
    assert_args_refused 'bad-signature', JSON.parse(payload)['args']
  end

  def test_another_class_is_refused
    assert_refused 'wrong-class', build, class_name: 'RefundInvoice'
    assert_refused 'wrong-class', build, payload_class: 'RefundInvoice'
    assert_refused 'wrong-class', build(class_name: 'RefundInvoice')
  end

  def test_another_queue_is_refused
    assert_refused 'wrong-queue', build, queue: 'invoices-eu'
    assert_refused 'wrong-queue', build(queue: 'invoices-eu')
  end

  def test_a_job_past_exp_is_expired_unless_within_the_leeway
    envelope = build(exp: NOW)
    assert_equal OPENED, open(envelope).args
    assert_refused 'expired', build(exp: NOW - 1)
    leeway = @producer.verifier(now: NOW, leeway: 60)
    assert_equal OPENED, open(build(exp: NOW - 60), verifier: leeway).args
    assert_refused 'expired', build(exp: NOW - 61), verifier: leeway
  end

  def test_a_key_id_not_configured_is_an_unknown_key
    stranger = Producer.new(sign_kid: 'sign-other')
    assert_refused 'unknown-key', stranger.envelope(args: ARGS)
  end

  def test_the_previous_signing_key_still_verifies
    previous = Producer.new(sign_kid: 'sign-previous')
    signing_keys = @producer.signing_keys.merge(previous.signing_keys)
    verifier = Jobgate::Verifier.new(signing_keys: signing_keys,
                                     sealing_keys: @producer.sealing_keys, clock: -> { NOW })
    assert_equal ARGS, open(previous.envelope(args: ARGS), verifier: verifier).args
    assert_equal OPENED, open(build, verifier: verifier).args
  end

  def test_a_sealed_value_moved_to_another_field_does_not_open
    envelope = build(args: [{ 'card_token' => nil, 'note' => nil }])
    envelope['args'][0]['note'] = envelope['args'][0].delete('card_token')
    envelope['sealed'] = ['/0/note']
    assert_refused 'unseal-failed', @producer.sign(envelope)
  end

  def test_a_sealed_value_copied_into_another_job_does_not_open
    sealed = build['args'][0]['card_token']
    envelope = build(id: '019ae5b8-47c0-7c3e-9a4e-000000000000')
    envelope['args'][0]['card_token'] = sealed
    assert_refused 'unseal-failed', @producer.sign(envelope)
  end

  def test_a_changed_ciphertext_does_not_open
    envelope = build
    sealed = envelope['args'][0]['card_token']
    sealed['ct'] = flip_first_byte(sealed['ct'])
    assert_refused 'unseal-failed', @producer.sign(envelope)
  end

  def test_an_ephemeral_key_of_low_order_does_not_open
    ["\x01".b + ("\0" * 31), "\0" * 32].each do |epk|
      envelope = build
      envelope['args'][0]['card_token']['epk'] = Producer.base64url(epk)
      assert_refused 'unseal-failed', @producer.sign(envelope)
    end
  end

  def test_malformed_sealed_values_do_not_open
    [{ 'extra' => 'x' }, { 'nonce' => 'AAAA' }, { 'ct' => 'AAAA' }, { 'epk' => 7 }].each do |change|
      envelope = build
      envelope['args'][0]['card_token'].merge!(change)
      assert_refused 'unseal-failed', @producer.sign(envelope)
    end
    not_sealed = build(args: [{ 'card_token' => 'plain' }], secrets: {})
    assert_refused 'unseal-failed', @producer.sign(not_sealed.merge('sealed' => ['/0/card_token']))
  end

  def test_a_seal_key_not_held_is_an_unknown_seal_key_before_any_unseal_failure
    envelope = build(args: [nil, nil], secrets: { '/0' => 'a', '/1' => 'b' })
    envelope['args'][0]['ct'] = 'AAAA'
    envelope['args'][1]['kid'] = 'workers-other'
    assert_refused 'unknown-seal-key', @producer.sign(envelope)
    without_seal_keys = Jobgate::Verifier.new(signing_keys: @producer.signing_keys,
                                              clock: -> { NOW })
    assert_refused 'unknown-seal-key', build, verifier: without_seal_keys
  end

  def test_args_without_an_envelope_are_unsigned
    [[], [1], [{ 'invoice_id' => 1 }], [build, build], nil, [[build]]].each do |args|
      assert_args_refused 'unsigned', args
    end
  end

  def test_another_version_is_unsupported
    [2, 0, '1', 1.0, nil].each do |version|
      assert_refused 'unsupported-version', @producer.sign(build.merge('jobgate' => version))
    end
  end

  def test_missing_extra_and_mistyped_members_are_malformed
    (Jobgate::Verifier::MEMBERS.keys - ['jobgate']).each do |member|
      assert_refused 'malformed', build.tap { |envelope| envelope.delete(member) }
    end
    assert_refused 'malformed', @producer.sign(build.merge('extra' => 1))
    mistyped = { 'iat' => '1764806400', 'exp' => 1.5, 'args' => {}, 'sealed' => '/0',
                 'tenant' => nil, 'kid' => 1 }
    mistyped.each do |member, value|
      assert_refused 'malformed', @producer.sign(build.merge(member => value))
    end
    assert_refused 'malformed', @producer.sign(build.merge('sealed' => [0]))
  end

  def test_a_signature_that_is_not_64_bytes_of_base64url_is_malformed
    sig = build['sig']
    ["#{sig}==", "+#{sig[1..]}", sig[1..], "#{sig}A", '', "#{sig[0...-1]}B"].each do |bad|
      assert_refused 'malformed', build.merge('sig' => bad)
    end
  end

  def test_every_job_of_a_batch_opens_on_its_own
    (1..17).each do |count|
      jobs = batch(count)
      assert_equal [jobs[0]['sig']], jobs.map { |envelope| envelope['sig'] }.uniq
      jobs.each_with_index do |envelope, index|
        assert_equal [index, count], envelope['proof'].values_at('index', 'size')
        assert_equal [envelope['id'], ARGS], open(envelope).to_h.values_at(:id, :args)
      end
    end
    sealed = @producer.sign_batch([build, build(id: '019ae5b8-47c0-7c3e-9a4e-000000000001')])
    sealed.each { |envelope| assert_equal OPENED, open(envelope).args }
  end

  def test_a_batch_of_the_most_jobs_one_signature_covers_opens_at_either_end
    [0, 65_535].each do |at|
      envelope = @producer.sign_batch([build], size: 65_536, at: at).first
      assert_equal 16, envelope['proof']['path'].length
      assert_equal OPENED, open(envelope).args
    end
  end

  def test_a_path_that_does_not_fit_its_index_and_size_is_a_bad_signature
    first, *, last = batch(5)
    extra = hash_text('another job')
    unfit = [with_proof(build, path: [extra]), with_proof(last, path: []),
             with_proof(last, path: last['proof']['path'] + [extra]),
             with_proof(first, size: 4), with_proof(first, size: 9), with_proof(first, index: 4)]
    unfit.each do |envelope|
      error = assert_refused('bad-signature', envelope)
      assert_match(/path does not fit/, error.message, envelope['proof'].inspect)
    end
    [with_proof(first, index: 1), with_proof(first, index: 2),
     with_proof(first, path: first['proof']['path'].reverse)].each do |envelope|
      error = assert_refused('bad-signature', envelope)
      assert_match(/does not verify/, error.message, envelope['proof'].inspect)
    end
  end

  # The signature covers the job and the root, not the proof's numbers: an index and size
  # that walk the same path from the same leaf to the same root still open the job, as
  # they do in jobgate verify.
  def test_a_proof_renumbered_to_the_same_root_still_opens
    first, *, last = batch(5)
    [with_proof(first, size: 8), with_proof(last, index: 1, size: 2)].each do |envelope|
      assert_equal ARGS, open(envelope).args
    end
  end

  def test_the_signature_covers_the_label_and_the_root_only
    envelope = build
    root = @producer.leaf(envelope)
    # The canonical form, with its proof or without, as a signature over the job itself
    # would cover it; the root without its label; the root under other labels.
    proven = Jobgate.canonicalize(envelope.reject { |name, _| name == 'sig' }).b
    bare = Jobgate.canonicalize(envelope.reject { |name, _| %w[proof sig].include?(name) }).b
    messages = [proven, bare, root, 'jobgate-tree-v2'.b + root, 'jobgate-seal-v1'.b + root]
    messages.each do |message|
      assert_refused 'bad-signature', envelope.merge('sig' => @producer.signature(message))
    end
    signed = envelope.merge('sig' => @producer.signature('jobgate-tree-v1'.b + root))
    assert_equal OPENED, open(signed).args
  end

  def test_proofs_not_of_an_index_a_size_and_a_path_are_malformed
    envelope = batch(5).first
    hash = envelope['proof']['path'][0]
    zeros = Producer.base64url("\0" * 32)
    proofs = [nil, [], 'proof', 1, envelope['proof'].merge('root' => hash)]
    proofs += %w[index path size].map { |name| envelope['proof'].reject { |key, _| key == name } }
    changes = { index: [-1, 5, 0.0, '0', nil, true, 2**64],
                size: [0, 65_537, 2**64, 5.0, '5', nil, [5]],
                path: [nil, hash, {}, [nil], [7], [''], ["#{hash}="], [hash] * 17,
                       ["+#{hash[1..]}"], ["/#{hash[1..]}"], ["#{zeros[0...-1]}B"],
                       [Producer.base64url("\0" * 31)], [Producer.base64url("\0" * 33)]] }
    changes.each do |name, values|
      proofs += values.map { |value| envelope['proof'].merge(name.to_s => value) }
    end
    proofs.each do |proof|
      error = assert_refused('malformed', envelope.merge('proof' => proof))
      assert_match(/proof/, error.message, proof.inspect)
    end
  end

  def test_sealed_entries_that_name_no_value_in_args_are_malformed
    pointers = ['', '0/card_token', '/1', '/0/nothing', '/00', '/-', '/0/card_token/kid/x', '/0/~2']
    pointers.each do |pointer|
      assert_refused 'malformed', @producer.sign(build.merge('sealed' => [pointer]))
    end
  end

  def test_checks_go_in_order
    unknown_key = Producer.new(sign_kid: 'sign-other').envelope(args: ARGS)
    assert_refused 'malformed', unknown_key.merge('extra' => 1)
    assert_refused 'malformed', with_proof(unknown_key, size: 0)
    assert_refused 'unknown-key', with_proof(unknown_key, path: [hash_text('another job')])
    tampered = build.merge('tenant' => 'evil')
    assert_refused 'bad-signature', tampered, class_name: 'Other', queue: 'other'
    unfit = with_proof(build(exp: NOW - 1), path: [hash_text('another job')])
    assert_refused 'bad-signature', unfit, class_name: 'Other', queue: 'other'
    assert_refused 'wrong-class', build(exp: NOW - 1), class_name: 'Other', queue: 'other'
    assert_refused 'wrong-queue', build(exp: NOW - 1), queue: 'other'
    expired_and_sealed_badly = build(exp: NOW - 1)
    expired_and_sealed_badly['args'][0]['card_token']['ct'] = 'AAAA'
    assert_refused 'expired', @producer.sign(expired_and_sealed_badly)
  end

  def test_keys_load_from_a_directory_of_key_files
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, 'sign-test.sign.pub'), "#{@producer.signing_keys.values[0]}\n")
      File.write(File.join(dir, 'workers-test.seal.key'), "#{@producer.sealing_keys.values[0]}\n")
      File.write(File.join(dir, 'sign-test.sign.key'), 'not for workers')
      File.write(File.join(dir, 'README'), 'ignored')
      verifier = Jobgate::Verifier.from_dir(dir, clock: -> { NOW })
      assert_equal OPENED, open(build, verifier: verifier).args
      assert_raises(ArgumentError) { Jobgate::Verifier.from_dir(dir, extra: 1) }
    end
  end

  def test_the_kits_verifier_loads_from_the_directory_in_jobgate_keys
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, 'sign-test.sign.pub'), @producer.signing_keys.values[0])
      ENV['JOBGATE_KEYS'] = dir
      assert_equal ARGS, Jobgate.verifier.open([build(secrets: {}, exp: 4_000_000_000)]).args
      error = assert_raises(Jobgate::Refused) { Jobgate.verifier.open([build(exp: 4_000_000_000)]) }
      assert_equal 'unknown-seal-key', error.reason
    ensure
      ENV.delete('JOBGATE_KEYS')
      Jobgate.verifier = nil
    end
  end

  def test_a_bad_key_is_refused_without_showing_it
    Dir.mktmpdir do |dir|
      assert_raises(ArgumentError) { Jobgate::Verifier.from_dir(dir) }
      File.write(File.join(dir, 'sign-test.sign.pub'), @producer.signing_keys['sign-test'])
      File.write(File.join(dir, 'workers-test.seal.key'), 'c2VjcmV0LWJ1dC1zaG9ydA')
      error = assert_raises(ArgumentError) { Jobgate::Verifier.from_dir(dir) }
      refute_includes error.message, 'c2VjcmV0LWJ1dC1zaG9ydA'
      File.write(File.join(dir, 'bad kid.seal.key'), @producer.sealing_keys['workers-test'])
      File.delete(File.join(dir, 'workers-test.seal.key'))
      assert_raises(ArgumentError) { Jobgate::Verifier.from_dir(dir) }
    end
  end

  def test_a_resque_job_class_performs_with_the_producers_args
    Jobgate.verifier = @verifier
    with_job_class('SendInvoice', :invoices) do |performed|
      SendInvoice.perform(JSON.parse(JSON.generate(build)))
      job, args = performed.fetch(0)
      assert_equal OPENED, args
      assert_equal '019ae5b8-47c0-7c3e-9a4e-5f0e7d1b2a63', job.id
      assert_nil SendInvoice.jobgate_job
      error = assert_raises(Jobgate::Refused) { SendInvoice.perform(build(queue: 'other')) }
      assert_equal 'wrong-queue', error.reason
    end
  ensure
    Jobgate.verifier = nil
  end
end

# The vectors jobgate's C code wrote: every kit must agree with them case by case.
class EnvelopeVectorsTest < Minitest::Test
  if File.exist?(ENVELOPE_VECTORS)
    VECTORS = JSON.parse(read_utf8(ENVELOPE_VECTORS))

    def verifier
      Jobgate::Verifier.new(signing_keys: VECTORS['signing_keys'],
                            sealing_keys: VECTORS['sealing_keys'], clock: -> { VECTORS['now'] })
    end

    def test_vectors_are_version_1_with_cases
      assert_equal 1, VECTORS['envelope']
      refute_empty VECTORS['cases']
    end

    VECTORS['cases'].each_with_index do |vector, index|
      define_method("test_vector_#{index}_#{vector['name'].gsub(/[^A-Za-z0-9]+/, '_')}") do
        payload = JSON.parse(vector['payload'])
        open = lambda do
          verifier.open(payload['args'], class_name: vector['class'], queue: vector['queue'],
                                         payload_class: payload['class'])
        end
        if vector['ok']
          job = open.call
          assert_equal [vector['id'], vector['tenant'], vector['sub'], vector['args']],
                       [job.id, job.tenant, job.sub, job.args]
        else
          error = assert_raises(Jobgate::Refused, &open)
          assert_equal vector['reason'], error.reason, error.message
        end
      end
    end
  else
    def test_vectors_are_present
      flunk "#{ENVELOPE_VECTORS} is missing: jobgate's C code writes it"
    end
  end
end

# A job pushed into Redis as jobgate pushes it, reserved and performed as Resque does.
class ResqueWorkerTest < Minitest::Test
  def setup
    @pid, @redis = ResqueStandIn.start_redis
    @producer = Producer.new
    @now = NOW
    Jobgate.verifier = @producer.verifier(clock: -> { @now })
  end

  def teardown
    Jobgate.verifier = nil
    ResqueStandIn.stop_redis(@pid, @redis)
  end

  # A job that opens with a secret: the first such case of the shared vectors when they
  # exist, else one built here. Returns [payload, queue, class name, opened args].
  def sample_job
    vectors = JSON.parse(read_utf8(ENVELOPE_VECTORS)) if File.exist?(ENVELOPE_VECTORS)
    vector = vectors && vectors['cases'].find do |candidate|
      candidate['ok'] && candidate['class'].match?(/\A[A-Z]\w*\z/) &&
        !secrets_in(candidate['payload'], candidate['args']).empty?
    end
    unless vector
      envelope = @producer.envelope(args: [nil], secrets: { '/0' => SECRET })
      return [Producer.payload(envelope), 'invoices', 'SendInvoice', [SECRET]]
    end

    Jobgate.verifier = Jobgate::Verifier.new(signing_keys: vectors['signing_keys'],
                                             sealing_keys: vectors['sealing_keys'],
                                             clock: -> { vectors['now'] })
    [vector['payload'], vector['queue'], vector['class'], vector['args']]
  end

  # The strings of opened args that the payload does not hold: the opened secrets.
  def secrets_in(payload, opened)
    strings = ->(value) { value.is_a?(Enumerable) ? value.flat_map { |v| strings.(v) } : [value] }
    strings.(opened).grep(String).reject { |text| text.empty? || payload.include?(text) }
  end

  def failed_jobs
    @redis.lrange('resque:failed', 0, -1).map { |text| JSON.parse(text) }
  end

  # What resque-web's retry does: Resque::Job.create from the failure's class and args.
  def retry_failure(index)
    failure = failed_jobs.fetch(index)
    job = failure['payload'].slice('class', 'args')
    ResqueStandIn.push(@redis, failure['queue'], JSON.generate(job))
  end

  def test_a_valid_job_runs_with_its_secret_opened
    payload, queue, class_name, opened = sample_job
    refute_empty secrets_in(payload, opened)
    with_job_class(class_name, queue) do |performed|
      ResqueStandIn.push(@redis, queue, payload)
      assert_equal :performed, ResqueStandIn.work_one(@redis, queue)
      assert_equal opened, performed.fetch(0)[1]
      assert_empty failed_jobs
    end
  end

  def test_a_tampered_job_ends_in_resque_failed_with_the_reason
    payload, queue, class_name, opened = sample_job
    tampered = JSON.parse(payload)
    tampered['args'][0]['tenant'] += '-evil'
    with_job_class(class_name, queue) do |performed|
      ResqueStandIn.push(@redis, queue, JSON.generate(tampered))
      assert_equal :failed, ResqueStandIn.work_one(@redis, queue)
      assert_empty performed
      failure = failed_jobs.fetch(0)
      assert_equal ['Jobgate::Refused', queue, tampered],
                   failure.values_at('exception', 'queue', 'payload')
      assert_match(/\Ajobgate: bad-signature: /, failure['error'])
      secrets_in(payload, opened).each { |secret| refute_includes JSON.generate(failure), secret }
    end
  end

  def test_a_retry_runs_the_same_job_until_exp_and_then_is_expired
    envelope = @producer.envelope(args: [nil], secrets: { '/0' => SECRET }, exp: NOW + 60)
    with_job_class('SendInvoice', :invoices, timeouts: 1) do |performed|
      ResqueStandIn.push(@redis, 'invoices', Producer.payload(envelope))
      assert_equal :failed, ResqueStandIn.work_one(@redis, 'invoices')
      refute_includes failed_jobs.to_s, SECRET

      retry_failure(0)
      assert_equal :performed, ResqueStandIn.work_one(@redis, 'invoices')
      assert_equal [envelope['id'], [SECRET]], [performed[0][0].id, performed[0][1]]

      @now = NOW + 61
      retry_failure(0)
      assert_equal :failed, ResqueStandIn.work_one(@redis, 'invoices')
      assert_match(/\Ajobgate: expired: /, failed_jobs.fetch(1)['error'])
    end
  end
end
