import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/** Starts a one-DataNode HDFS for streambed's tests; prints "READY <port>" and runs until stdin closes. */
public class MiniHdfs {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        Configuration conf = new Configuration();
        conf.set("hdfs.minidfs.basedir", args[1]);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", false);
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
            .nameNodePort(port).nameNodeHttpPort(0).numDataNodes(1).format(true).build();
        cluster.waitActive();
        System.out.println("READY " + cluster.getNameNodePort());
        System.out.flush();
        while (System.in.read() != -1) { }
        cluster.shutdown();
    }
}
