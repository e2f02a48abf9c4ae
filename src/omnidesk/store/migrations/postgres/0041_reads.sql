-- PostgreSQL twin of sqlite/0041_reads.sql.
-- What each agent has read (store/inbox.py): a conversation is new to an
-- agent who never opened it, and unread while the customer wrote after the
-- agent last looked (conversations.last_customer_at > read_at). One row per
-- agent and conversation they opened, written when they open it.
CREATE TABLE conversation_reads (
    username        TEXT NOT NULL,
    conversation_id BIGINT NOT NULL,
    read_at         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (username, conversation_id)
);
