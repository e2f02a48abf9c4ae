-- E-mail copies of notices (a notify action with email = true): each
-- notification that wants one is queued here and sent by service/notices.py
-- through an e-mail channel's relay, retried with backoff.
--
-- email_state:   NULL (no e-mail wanted), 'pending', 'sending' (claimed until
--                email_next_at: a crash mid-send gives it back), 'sent',
--                'failed' (gave up after the retries) or 'skipped' (the agent
--                has no e-mail address, or is disabled).
ALTER TABLE notifications ADD COLUMN email_state TEXT;
ALTER TABLE notifications ADD COLUMN email_next_at REAL;
ALTER TABLE notifications ADD COLUMN email_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN email_error TEXT;
CREATE INDEX notifications_email_due ON notifications (email_next_at)
    WHERE email_state IN ('pending', 'sending');
