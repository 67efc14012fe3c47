// tutorial/code/steps/04-head-main.cpp: the main that ends the reader's server.cpp in chapter 4.
//
// Not a program by itself: chapter 3's main with a parsed head. It answers a good request
// with its method and target, a bad one with the status the parser chose. make test builds
// what the chapter has the reader type (tutorial_code --build) and checks it (tests/steps_test.cpp).

// ANCHOR: main
int main(int argc, char** argv) {
  int exit_status = 1;
  Socket listener = listen_from_args(argc, argv, exit_status);
  if (!listener) return exit_status;

  const int no_stop = -1;
  const auto timeout = std::chrono::milliseconds(kDefaultTimeoutMs);
  while (Socket connection = accept_connection(listener, no_stop, timeout)) {
    std::array<char, kBufferSize> input, output;
    Reader reader(connection, input, no_stop);
    Writer writer(connection, output);
    std::optional<ParsedHead> head = read_request_head(reader, Clock::now() + timeout);
    if (!head) continue;  // the client left, or said nothing: close without a word
    // "GET /hello" for a good head; the reason phrase ("Bad Request") for a bad one.
    const bool ok = head->status == Status::OK;
    const std::string_view method = ok ? head->request.method : reason_phrase(head->status);
    const std::string_view separator = ok ? " " : "", target = ok ? head->request.target : "";
    writer.write("HTTP/1.1 ");
    writer.write_number(static_cast<int>(head->status));
    writer.write(" ");
    writer.write(reason_phrase(head->status));
    writer.write("\r\nContent-Length: ");
    writer.write_number(method.size() + separator.size() + target.size() + 1);
    writer.write("\r\nConnection: close\r\n\r\n");
    writer.write(method);
    writer.write(separator);
    writer.write(target);
    writer.write("\n");
    if (writer.flush()) linger_before_close(connection, reader);
  }
  return 1;
}
// ANCHOR_END: main
