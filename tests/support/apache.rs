//! Real Apache + ModSecurity for end-to-end tests.
