-- The language of the emails about an account: the page's or request's at
-- signup, changed from the account page. '' is -default-language.
ALTER TABLE users ADD COLUMN language TEXT NOT NULL DEFAULT '';
