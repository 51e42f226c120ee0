# frozen_string_literal: true

# What a Resque worker does with one job, for the Ruby kit's tests, which have no Resque
# gem: a throwaway redis-server, and a reserve-and-perform that pops a payload, finds its
# class and calls perform with its args, recording an exception in resque:failed as
# Resque::Failure::Redis does.

require 'json'
require 'redis'
require 'socket'

module ResqueStandIn
  # Starts redis-server on a free port and returns [pid, Redis client] once it answers.
  def self.start_redis
    port = TCPServer.open('127.0.0.1', 0) { |server| server.addr[1] }
    pid = Process.spawn('redis-server', '--port', port.to_s, '--bind', '127.0.0.1', '--save', '',
                        '--appendonly', 'no', out: File::NULL, err: File::NULL)
    redis = Redis.new(host: '127.0.0.1', port: port)
    100.times do
      return [pid, redis] if (redis.ping rescue nil) == 'PONG'

      sleep 0.05
    end
    stop_redis(pid, redis)
    raise "redis-server did not answer on port #{port}"
  end

  def self.stop_redis(pid, redis)
    redis.close
    Process.kill('TERM', pid)
    Process.wait(pid)
  end

  # Resque.enqueue's writes, for a payload text made elsewhere (jobgate's, here).
  def self.push(redis, queue, payload)
    redis.sadd?('resque:queues', queue)
    redis.rpush("resque:queue:#{queue}", payload)
  end

  # Resque::Worker#reserve then Resque::Job#perform for one job from queue. Returns
  # :performed, :failed, or nil when the queue is empty.
  def self.work_one(redis, queue)
    text = redis.lpop("resque:queue:#{queue}") or return nil
    payload = JSON.parse(text)
    Object.const_get(payload['class']).perform(*payload['args'])
    :performed
  rescue StandardError => e
    record_failure(redis, queue, payload, e)
    :failed
  end

  def self.record_failure(redis, queue, payload, error)
    redis.rpush('resque:failed', JSON.generate(
      'failed_at' => Time.now.utc.strftime('%Y/%m/%d %H:%M:%S %Z'), 'payload' => payload,
      'exception' => error.class.name, 'error' => error.message,
      'backtrace' => Array(error.backtrace), 'queue' => queue,
      'worker' => "#{Socket.gethostname}:#{Process.pid}:#{queue}"
    ))
  end
end
