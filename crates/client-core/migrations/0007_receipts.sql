-- Delivery and read receipts (issue 15): how far a peer reports an outgoing message
-- got. NULL until a receipt arrives; 'read' is never lowered back to 'delivered'.
ALTER TABLE messages ADD COLUMN receipt TEXT CHECK (receipt IN ('delivered', 'read'));
