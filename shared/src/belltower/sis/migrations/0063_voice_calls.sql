-- Calls placed through Twilio (the Communication Queue's voice_provider: twilio) are followed
-- up like texts, channel by channel: the index of messages whose status may still change now
-- holds the calls' statuses too (queued, ringing, in-progress) and leads with the channel.
-- Only the index changes; no table or row does (docs/integrations.md, docs/sis-schema.md).
DROP INDEX sis.outbox_pending_status;
CREATE INDEX outbox_pending_status ON sis.outbox (channel, recorded_at)
    WHERE provider_sid IS NOT NULL
      AND status IN ('accepted', 'queued', 'sending', 'sent', 'scheduled', 'ringing', 'in-progress');
