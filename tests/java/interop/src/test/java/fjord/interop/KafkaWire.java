package fjord.interop;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import org.apache.kafka.common.requests.AbstractRequest;
import org.apache.kafka.common.requests.AbstractResponse;
import org.apache.kafka.common.requests.RequestHeader;

/**
 * One request over a plain socket, encoded and decoded by the Java client's own request
 * classes: for APIs the 4.x Admin no longer sends (AlterConfigs), so that they too are
 * tested with Kafka's codec rather than ours.
 */
final class KafkaWire {
  private KafkaWire() {}

  static AbstractResponse send(String address, AbstractRequest request) throws IOException {
    String[] hp = address.split(":");
    RequestHeader header =
        new RequestHeader(request.apiKey(), request.version(), "fjord-java-wire", 1);
    ByteBuffer frame = request.serializeWithHeader(header);
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 10_000);
      s.setSoTimeout(30_000);
      OutputStream out = s.getOutputStream();
      byte[] body = new byte[frame.remaining()];
      frame.get(body);
      out.write(ByteBuffer.allocate(4).putInt(body.length).array());
      out.write(body);
      out.flush();
      DataInputStream in = new DataInputStream(s.getInputStream());
      int size = in.readInt();
      byte[] reply = new byte[size];
      in.readFully(reply);
      return AbstractResponse.parseResponse(ByteBuffer.wrap(reply), header);
    }
  }
}
