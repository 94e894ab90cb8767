//! The input line: text with a cursor, several lines when Alt-Enter asks for them.

/// The text being typed and where the cursor is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    /// Byte offset of the cursor, always on a char boundary.
    cursor: usize,
}

impl Input {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Types `c` at the cursor.
    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Types `s` at the cursor.
    pub fn insert_str(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    /// Moves one character left.
    pub fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    /// Moves one character right.
    pub fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    /// To the start of the current line.
    pub fn home(&mut self) {
        self.cursor = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
    }

    /// To the end of the current line.
    pub fn end(&mut self) {
        self.cursor = self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i);
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind([' ', '\n']).map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// The word being typed at the cursor (for completion) and where it starts.
    pub fn current_word(&self) -> (usize, &str) {
        let before = &self.text[..self.cursor];
        let start = before.rfind([' ', '\n']).map_or(0, |i| i + 1);
        (start, &self.text[start..self.cursor])
    }

    /// Replaces the word at the cursor with `word`.
    pub fn replace_word(&mut self, word: &str) {
        let (start, _) = self.current_word();
        self.text.replace_range(start..self.cursor, word);
        self.cursor = start + word.len();
    }

    /// Empties it, giving back what was typed.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// The lines typed, and the (line, byte offset in it) of the cursor.
    pub fn lines(&self) -> (Vec<&str>, (usize, usize)) {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let before = &self.text[..self.cursor];
        let row = before.matches('\n').count();
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1);
        (lines, (row, col))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn editing_keeps_the_cursor_on_character_boundaries() {
        let mut input = Input::default();
        for c in "日本 ok".chars() {
            input.insert(c);
        }
        input.left();
        input.left();
        input.left();
        input.backspace();
        assert_eq!(input.text(), "日 ok");
        input.home();
        input.delete();
        assert_eq!(input.text(), " ok");
        input.end();
        input.insert('\n');
        input.insert_str("two");
        let (lines, cursor) = input.lines();
        assert_eq!(lines, [" ok", "two"]);
        assert_eq!(cursor, (1, 3));
        input.delete_word();
        assert_eq!(input.text(), " ok\n");
        assert_eq!(input.take(), " ok\n");
        assert!(input.is_empty());
    }

    #[test]
    fn the_current_word_is_what_completion_replaces() {
        let mut input = Input::default();
        input.insert_str("/msg bo");
        assert_eq!(input.current_word(), (5, "bo"));
        input.replace_word("bob@example.org ");
        assert_eq!(input.text(), "/msg bob@example.org ");
    }
}
