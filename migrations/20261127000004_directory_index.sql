-- The members directory pages through active members by name: without this index every page
-- sorted the whole member list.
CREATE INDEX members_directory ON members (status, lower(display_name), id);
