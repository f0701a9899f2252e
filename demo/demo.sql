-- Placeholder: the real demo (sample Stripe records in, typed rows out) comes later.
CREATE EXTENSION sequin_upsert;
SELECT 1;
