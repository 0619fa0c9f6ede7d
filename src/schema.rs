//! Diesel schema of the `stored_sessions` table (see `migrations/`).

diesel::table! {
    /// One row per live session.
    stored_sessions (id) {
        /// Surrogate key; batched deletes walk it.
        id -> BigInt,
        /// SHA-256 of the public id (32 bytes).
        sid -> Binary,
        /// The encrypted envelope.
        data -> Binary,
        /// Write counter for compare-and-swap updates.
        version -> BigInt,
        /// HMAC of the application's user id, when the session is bound to one.
        user_key -> Nullable<Binary>,
        /// Creation (or last renew) time, Unix seconds.
        created_at -> BigInt,
        /// Last write or touch, Unix seconds.
        updated_at -> BigInt,
        /// The session's deadline, Unix seconds, recomputed at each write
        /// and touch (the earliest of its idle window, the absolute
        /// lifetime and its own deadline); indexed, with `updated_at`.
        /// `NULL`: the store's limits apply (rows last written before the
        /// column existed, or sessions no limit applies to).
        expires_at -> Nullable<BigInt>,
    }
}
