//! deckhand's custom resources, `AIRequest` and `AIConversation`, and their CRDs.
